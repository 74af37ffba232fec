"""MLflow logging time as a fraction of a small run's wall time."""

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


def main() -> None:
    torch.set_num_threads(1)
    registry = Registry()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        timings = {}
        for enabled in (False, True):
            spec = parse_spec(SPEC | {"tracking": {"enabled": enabled}})
            started = time.perf_counter()
            run_spec(spec, registry, tracking_uri=f"sqlite:///{root / 'mlflow.db'}", results_root=root / str(enabled))
            timings[enabled] = time.perf_counter() - started
    overhead = timings[True] - timings[False]
    print(
        f"run without tracking {timings[False]:.1f}s, with MLflow {timings[True]:.1f}s: "
        f"tracking adds {overhead:.1f}s ({overhead / timings[True]:.0%} of the tracked run)"
    )


if __name__ == "__main__":
    main()
