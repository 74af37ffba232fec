"""``harness predict --delta D [D ...]``: every predictor's gamma*, as tables and optionally a plot."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.errors import HarnessError
from harness.predict import (
    describe_context,
    format_table,
    predict_all,
    resolve_setting,
    write_prediction_plot,
)
from harness.registry import Registry


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="gamma* of every installed predictor at given deltas",
        description=(
            "Print each predictor's critical width ratio gamma* = m/n, or why it has none, "
            "for each --delta; --plot draws them all against delta."
        ),
    )
    p.add_argument("--delta", type=float, nargs="+", metavar="DELTA", help="input ratios d/n to tabulate")
    p.add_argument("--activation", default="relu", help="activation plugin (default: relu)")
    p.add_argument(
        "--activation-param", action="append", default=[], metavar="KEY=VALUE", help="activation parameter (repeatable)"
    )
    p.add_argument("--data-model", default="gaussian", help="data model plugin (default: gaussian)")
    p.add_argument(
        "--data-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="data model parameter, YAML value (repeatable)",
    )
    p.add_argument("--n", type=int, default=100, help="number of samples n; d = round(delta n) (default: 100)")
    p.add_argument("--gamma-teacher", type=float, default=0.5, help="teacher width m*/n (default: 0.5)")
    p.add_argument("--plot", type=Path, metavar="PATH", help="also write a figure of gamma* against delta")
    p.add_argument(
        "--delta-range",
        type=float,
        nargs=3,
        metavar=("START", "STOP", "NUM"),
        help="deltas of the plot: NUM evenly spaced values from START to STOP (default: the --delta values)",
    )
    p.set_defaults(func=run)
    return p


def parse_assignments(items: list[str], option: str) -> dict[str, Any]:
    """``["key=value", ...]`` to a dict, values read as YAML (``3`` is an int, ``[1, 2]`` a list)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HarnessError(f"{option} {item!r}: expected KEY=VALUE, e.g. {option} condition_number=10")
        if key in params:
            raise HarnessError(f"{option} gives {key!r} twice; give each parameter once")
        try:
            params[key] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise HarnessError(f"{option} {item!r}: the value is not valid YAML ({exc})") from exc
    return params


def plot_deltas(args: argparse.Namespace) -> list[float]:
    """The deltas of the figure: ``--delta-range`` if given, else ``--delta``."""
    if args.delta_range is None:
        return list(args.delta or [])
    start, stop, num = args.delta_range
    if num != int(num) or num < 2:
        raise HarnessError(f"--delta-range NUM must be an integer >= 2, got {num:g}")
    if not (math.isfinite(start) and math.isfinite(stop) and 0.0 < start < stop):
        raise HarnessError(f"--delta-range needs 0 < START < STOP, got {start:g} {stop:g}")
    return np.linspace(start, stop, int(num)).tolist()


def _check_arguments(args: argparse.Namespace) -> None:
    if not args.delta and args.delta_range is None:
        raise HarnessError("give --delta D [D ...] (and/or --delta-range START STOP NUM with --plot)")
    if args.delta_range is not None and args.plot is None:
        raise HarnessError("--delta-range only sets the plot's deltas; add --plot PATH or use --delta")
    for delta in args.delta or []:
        if not (math.isfinite(delta) and delta > 0.0):
            raise HarnessError(f"--delta must be positive, got {delta:g}")


def run(args: argparse.Namespace, registry: Registry | None = None) -> int:
    _check_arguments(args)
    deltas_to_plot = plot_deltas(args) if args.plot is not None else []
    registry = registry if registry is not None else Registry()
    data_params = parse_assignments(args.data_param, "--data-param")
    activation_params = parse_assignments(args.activation_param, "--activation-param")
    setting = resolve_setting(
        registry, args.activation, args.data_model, data_params, activation_params, args.n, args.gamma_teacher
    )

    for index, delta in enumerate(args.delta or []):
        ctx = setting.context(delta)
        if index:
            print()
        print(describe_context(ctx, args.data_model))
        print(format_table(predict_all(registry, ctx)))

    if args.plot is not None:
        path = write_prediction_plot(registry, setting, deltas_to_plot, args.plot)
        print(f"wrote {path}")
    return 0
