"""The local result store: the source of truth of a run.

One folder per (spec name, spec hash) under the results root.  Each batch is
written atomically (temporary file, then rename) as soon as it finishes, so
a killed run loses at most the batches in flight and a second ``harness
run`` of the same spec resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.errors import HarnessError
from harness.results import BatchResult
from harness.spec import Spec

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("results/runs")


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.batches_dir = path / "batches"

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def open(cls, spec: Spec, root: Path = DEFAULT_ROOT) -> RunStore:
        """Open the store of this exact spec, creating it on first use."""
        store = cls(Path(root) / f"{spec.name}-{spec.digest()[:12]}")
        try:
            store.batches_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarnessError(f"cannot create result store {store.path}: {exc.strerror}") from exc
        spec_file = store.path / "spec.yaml"
        if not spec_file.exists():
            _atomic_write(spec_file, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False).encode())
        return store

    @classmethod
    def at(cls, path: str | Path) -> RunStore:
        store = cls(Path(path))
        if not (store.path / "spec.yaml").exists():
            raise HarnessError(f"{path} is not a harness run folder (no spec.yaml); see results/runs/")
        return store

    def spec(self) -> Spec:
        return Spec.model_validate(yaml.safe_load((self.path / "spec.yaml").read_text()))

    def meta(self) -> dict[str, Any]:
        path = self.path / "meta.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def update_meta(self, **values: Any) -> None:
        meta = self.meta() | values
        _atomic_write(self.path / "meta.json", json.dumps(meta, indent=2).encode())

    def write_batch(self, result: BatchResult, eigenvalues: dict[str, np.ndarray]) -> None:
        """Eigenvalues first, then the JSON record whose presence marks the batch done."""
        if eigenvalues:
            fd, tmp = tempfile.mkstemp(dir=self.batches_dir, suffix=".npz")
            os.close(fd)
            np.savez_compressed(tmp, **eigenvalues)
            os.replace(tmp, self.batches_dir / f"{result.batch_id}.eigenvalues.npz")
        payload = json.dumps(result.to_json(), indent=1, allow_nan=True).encode()
        _atomic_write(self.batches_dir / f"{result.batch_id}.json", payload)

    def load_batches(self) -> list[BatchResult]:
        results = []
        for path in sorted(self.batches_dir.glob("*.json")):
            try:
                results.append(BatchResult.from_json(json.loads(path.read_text())))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("skipping unreadable batch record %s: %s", path, exc)
        return results

    def eigenvalues(self, batch_id: str) -> dict[str, np.ndarray]:
        path = self.batches_dir / f"{batch_id}.eigenvalues.npz"
        if not path.exists():
            return {}
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
