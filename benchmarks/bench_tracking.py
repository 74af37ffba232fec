"""MLflow logging time as a fraction of a small run's wall time.

The first tracked run also pays one-off costs (importing mlflow, creating the
sqlite schema); the second, on the same database, shows the per-run cost.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from harness.registry import Registry
from harness.runner import run_spec
from harness.spec import parse_spec

SPEC = {
    "name": "bench-tracking",
    "seeds": 2,
    "grid": {"n": [16], "delta": [0.5, 1.0], "gamma": [0.25, 1.0, 2.0]},
    "optimizers": [{"name": "gd", "params": {"lr": 0.3}}],
    "training": {"max_steps": 500},
    "analysis": {"bootstrap": 50},
}


def _timed_run(registry: Registry, root: Path, label: str, enabled: bool, seeds: int) -> float:
    spec = parse_spec(SPEC | {"tracking": {"enabled": enabled}, "seeds": seeds})
    started = time.perf_counter()
    run_spec(spec, registry, tracking_uri=f"sqlite:///{root / 'mlflow.db'}", results_root=root / label)
    return time.perf_counter() - started


def main() -> None:
    torch.set_num_threads(1)
    registry = Registry()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        untracked = _timed_run(registry, root, "untracked", False, 2)
        first = _timed_run(registry, root, "first", True, 2)
        # a different seed count: a new result store, so the batches are computed again
        again_untracked = _timed_run(registry, root, "untracked3", False, 3)
        again = _timed_run(registry, root, "again", True, 3)
    print(
        f"first tracked run {first:.1f}s vs {untracked:.1f}s untracked "
        f"(one-off mlflow import and database creation included); "
        f"on the existing database {again:.1f}s vs {again_untracked:.1f}s: tracking adds "
        f"{again - again_untracked:.1f}s ({(again - again_untracked) / again:.0%} of the tracked run)"
    )


if __name__ == "__main__":
    main()
