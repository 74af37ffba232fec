"""``harness report RUN``: the summary of a stored run."""

from __future__ import annotations

import argparse

from harness.store import RunStore
from harness.summary import run_summary


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="print the summary of a stored run (a folder under results/runs)")
    p.add_argument("run", help="run folder, e.g. results/runs/quickstart-0123456789ab")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = RunStore.at(args.run)
    results = store.load_batches()
    print(run_summary(results) if results else f"{args.run}: no finished batch yet")
    return 0
