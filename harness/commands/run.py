"""``harness run SPEC``: train, classify, store and track a spec's grid."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.registry import Registry
from harness.runner import run_spec
from harness.spec import load_spec
from harness.store import DEFAULT_ROOT

DEFAULT_SPEC = Path("specs/quickstart.yaml")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a spec (default: specs/quickstart.yaml)")
    p.add_argument("spec", nargs="?", default=str(DEFAULT_SPEC), help="YAML spec file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field, e.g. --set training.max_steps=200 (repeatable)")
    p.add_argument("--executor", default="local", help="executor plugin (local, ray)")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--no-tracking", action="store_true", help="do not mirror the run to MLflow")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the batched models are small, and extra threads "
                        "mostly spin; raise it for very wide networks)")
    p.add_argument("--results", type=Path, default=DEFAULT_ROOT, help="result store root (default: results/runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.no_tracking:
        overrides.append("tracking.enabled=false")
    if args.threads < 1:
        raise HarnessError(f"--threads {args.threads}: give at least 1")
    spec = load_spec(args.spec, overrides)
    torch.set_num_threads(args.threads)
    run_spec(spec, Registry(), executor=args.executor, tracking_uri=args.tracking_uri, results_root=args.results)
    return 0
