"""``harness kappa [ACT ...]``: activation complexity by two quadratures."""

from __future__ import annotations

import argparse

from harness.activation_math import bind
from harness.kappa import AGREEMENT_TOL, compute_kappa
from harness.registry import Registry


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kappa", help="kappa(sigma) = E[sigma'(z)^2] for activations (default: all)")
    p.add_argument("activations", nargs="*", metavar="ACT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = Registry()
    plugins = [registry.get("activation", name) for name in args.activations or registry.names("activation")]
    print(f"{'activation':<12} {'quadrature':>14} {'adaptive':>14} {'closed form':>14}  check")
    disagree = 0
    for plugin in plugins:
        name = plugin.name
        k = compute_kappa(bind(plugin))
        closed = f"{k.closed_form:14.10f}" if k.closed_form is not None else f"{'-':>14}"
        check = "agree" if k.agree else f"DISAGREE by {abs(k.quadrature - k.adaptive):.2e} (> {AGREEMENT_TOL:g})"
        disagree += not k.agree
        print(f"{name:<12} {k.quadrature:14.10f} {k.adaptive:14.10f} {closed}  {check}")
    return 1 if disagree else 0
