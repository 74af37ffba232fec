"""Plain-text summaries of a run, for the terminal and ``harness report``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.results import STATES, BatchResult

_SHORT = {"global": "glob", "spurious_min": "spur", "saddle": "sadl", "unconverged": "unconv", "diverged": "div"}


def _num(value: float | None, fmt: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def transition_text(result: BatchResult) -> str:
    t = result.transition
    if t.gamma_hat is None:
        return t.status
    interval = f" [{_num(t.ci_low)}, {_num(t.ci_high)}]" if t.ci_low is not None else " [no interval]"
    text = f"gamma_hat {_num(t.gamma_hat)}{interval}, 10-90% width {_num(t.width)}"
    if t.status != "ok":
        text += f" ({t.status.removeprefix('ok: ')})"
    return text


def batch_summary(result: BatchResult) -> str:
    head = (
        f"{result.activation} | {result.data_model} | {result.optimizer} | "
        f"n={result.n} delta={result.delta:g} (d={result.d}, teacher m*={result.teacher_width}) | "
        f"kappa={result.kappa:.4f}"
    )
    lines = [head, f"  measured: {transition_text(result)}"]
    predicted = [
        f"{name} {_num(rec.value)}" for name, rec in sorted(result.predictions.items()) if rec.value is not None
    ]
    skipped = [name for name, rec in sorted(result.predictions.items()) if rec.value is None]
    lines.append("  predicted gamma*: " + (", ".join(predicted) or "none applicable"))
    if skipped:
        lines.append("  not applicable: " + ", ".join(skipped))

    header = "    gamma      m  success  " + " ".join(f"{_SHORT[s]:>6}" for s in STATES)
    lines.append(header)
    for point in result.curve:
        counts = " ".join(f"{point.counts.get(s, 0):>6}" for s in STATES)
        lines.append(f"  {point.gamma:>7.3g} {point.width:>6} {point.successes:>4}/{point.runs:<3}  {counts}")

    unconverged = result.unconverged_fraction
    if unconverged > 0:
        lines.append(
            f"  WARNING: {unconverged:.0%} of runs spent their budget without converging; "
            "their final loss measures training speed, not the landscape"
        )
    spurious = [e for e in result.endpoints if e.state == "spurious_min" and e.perturb_escaped is not None]
    if spurious:
        escaped = [e for e in spurious if e.perturb_escaped]
        lines.append(
            f"  perturb-and-retrain: {len(escaped)} of {len(spurious)} spurious minima lowered their loss "
            "after a small kick (not local minima)"
        )
    kinked = sum(e.near_kink_samples > 0 for e in result.endpoints)
    if kinked:
        lines.append(f"  note: {kinked} end point(s) have samples on a kink (one-sided Hessian there)")
    return "\n".join(lines)


def run_summary(results: Sequence[BatchResult]) -> str:
    return "\n\n".join(batch_summary(r) for r in results)
