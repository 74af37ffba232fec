"""Writes the results table and the claims report next to the stored batches."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict
from pathlib import Path

from harness import hookimpl
from harness.events import RunFinished
from harness.results import BatchResult
from harness.summary import transition_text

_BATCH_COLUMNS = ("activation", "data_model", "optimizer", "n", "delta", "d", "teacher_width", "kappa")


def write_results_table(results: list[BatchResult], path: Path) -> None:
    """One row per end point, with its batch's coordinates."""
    rows = []
    for r in results:
        for e in r.endpoints:
            rows.append({k: getattr(r, k) for k in _BATCH_COLUMNS} | asdict(e))
    if not rows:
        return
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _verdict(value: float | None, r: BatchResult) -> str:
    """Where a prediction falls relative to the measurement; a fact, not a judgement of the paper."""
    t = r.transition
    if value is None:
        return "not applicable"
    if t.gamma_hat is None:
        return t.status
    if t.ci_low is None or t.ci_high is None:
        return f"{value / t.gamma_hat:.2f} x gamma_hat (no interval)"
    inside = "inside" if t.ci_low <= value <= t.ci_high else "outside"
    return f"{inside} the interval ({value / t.gamma_hat:.2f} x gamma_hat)"


def claims_report(results: list[BatchResult]) -> str:
    lines = [
        "# Measured transitions next to every prediction",
        "",
        "gamma_hat: where a logistic fit (in log gamma) of the fraction of runs ending",
        "at a global minimum crosses 1/2, with a bootstrap interval.  Cells whose runs",
        "did not converge are flagged: there the final loss measures training speed.",
        "",
    ]
    for r in results:
        lines.append(
            f"## {r.activation} | {r.data_model} | {r.optimizer} | n={r.n}, delta={r.delta:g} (d={r.d})"
        )
        lines.append("")
        lines.append(f"- kappa = {r.kappa:.6f}")
        lines.append(f"- measured: {transition_text(r)}")
        if r.unconverged_fraction:
            lines.append(f"- WARNING: {r.unconverged_fraction:.0%} of runs did not converge within the budget")
        if r.data_notes:
            lines.append(f"- data notes: {r.data_notes}")
        lines.append("")
        lines.append("| predictor | gamma* | versus the measurement | source |")
        lines.append("|---|---|---|---|")
        for name, rec in sorted(r.predictions.items()):
            shown = f"{rec.value:.4g}" if rec.value is not None and math.isfinite(rec.value) else "-"
            verdict = _verdict(rec.value, r) if rec.value is not None else f"not applicable: {rec.reason}"
            lines.append(f"| {name} | {shown} | {verdict} | {rec.source} |")
        lines.append("")
    return "\n".join(lines)


@hookimpl(tryfirst=True)
def harness_run_finished(event: RunFinished) -> None:
    folder = event.run.store_path / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    write_results_table(event.results, folder / "results.csv")
    (folder / "claims_report.md").write_text(claims_report(event.results))
