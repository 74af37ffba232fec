"""``harness validate SPEC``: check a spec and its plugins without running it."""

from __future__ import annotations

import argparse

from harness.batch import plan
from harness.registry import Registry
from harness.runner import check_plugins
from harness.spec import load_spec


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a spec; exit 2 listing every problem")
    p.add_argument("spec", help="YAML spec file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.overrides)
    check_plugins(spec, Registry())
    tasks = plan(spec)
    models = spec.grid.size() * len(spec.seed_list())
    print(f"{args.spec}: valid; {len(tasks)} batch(es) of {models} model(s) each")
    return 0
