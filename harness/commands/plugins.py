"""``harness plugins``: every installed plugin, by family."""

from __future__ import annotations

import argparse

from harness.registry import Registry


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list installed plugins and where they come from")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = [(item.family, item.name, item.distribution, item.description) for item in Registry().listings()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{'family':<{widths[0]}}  {'name':<{widths[1]}}  {'distribution':<{widths[2]}}  description")
    for family, name, dist, desc in rows:
        print(f"{family:<{widths[0]}}  {name:<{widths[1]}}  {dist:<{widths[2]}}  {desc}")
    return 0
