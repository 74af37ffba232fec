"""Phase diagrams: success rate over (delta, gamma) with every predicted gamma* drawn on it."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from harness import hookimpl
from harness.events import RunFinished
from harness.results import BatchResult

_MARKERS = "os^vD<>phx*+"


def _combination(r: BatchResult) -> tuple[str, str, str, int]:
    return (r.activation, r.data_model, r.optimizer, r.n)


def _slug(parts: tuple) -> str:
    return "__".join(str(p) for p in parts).replace("/", "-").replace(" ", "")


def phase_diagram(results: list[BatchResult], path: Path) -> None:
    """Two panels per combination: success rate, and log10 median final loss (the paper's colouring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(results, key=lambda r: r.delta)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    _draw_cells(axes[0], results, "success")
    _draw_cells(axes[1], results, "loss")
    for ax in axes:
        _draw_predictions(ax, results)
        _draw_measured(ax, results)
        ax.set_xlabel("delta = d / n")
        ax.set_yscale("log")
    axes[0].set_ylabel("gamma = m / n")
    axes[0].set_title("fraction of runs ending at a global minimum")
    axes[1].set_title("log10 median final training loss")
    first = results[0]
    fig.suptitle(f"{first.activation} | {first.data_model} | {first.optimizer} | n = {first.n}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(5, max(1, len(labels))), fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw_cells(ax, results: list[BatchResult], what: str) -> None:
    xs, ys, cs = [], [], []
    for r in results:
        for point in r.curve:
            xs.append(r.delta)
            ys.append(point.gamma)
            if what == "success":
                cs.append(point.success_rate)
            else:
                losses = [e.loss for e in r.endpoints if e.width == point.width and math.isfinite(e.loss)]
                cs.append(math.log10(max(float(np.median(losses)), 1e-300)) if losses else math.nan)
    cmap, vmin, vmax = ("viridis", 0.0, 1.0) if what == "success" else ("magma", None, None)
    sc = ax.scatter(xs, ys, c=cs, cmap=cmap, vmin=vmin, vmax=vmax, s=140, marker="s", edgecolors="none")
    ax.figure.colorbar(sc, ax=ax, fraction=0.046, pad=0.02)


def _draw_predictions(ax, results: list[BatchResult]) -> None:
    names = sorted({name for r in results for name in r.predictions})
    for i, name in enumerate(names):
        points = [(r.delta, r.predictions[name].value) for r in results if name in r.predictions]
        points = [(x, y) for x, y in points if y is not None and math.isfinite(y) and y > 0]
        if not points:
            continue
        x, y = zip(*points)
        ax.plot(x, y, marker=_MARKERS[i % len(_MARKERS)], linestyle="--", linewidth=1.2, label=f"gamma* {name}")


def _draw_measured(ax, results: list[BatchResult]) -> None:
    found = [r for r in results if r.transition.gamma_hat is not None]
    if not found:
        return
    x = [r.delta for r in found]
    y = [r.transition.gamma_hat for r in found]
    lo = [r.transition.gamma_hat - (r.transition.ci_low or r.transition.gamma_hat) for r in found]
    hi = [(r.transition.ci_high or r.transition.gamma_hat) - r.transition.gamma_hat for r in found]
    ax.errorbar(x, y, yerr=[lo, hi], color="red", marker="*", markersize=11, linestyle="-",
                linewidth=2, capsize=4, label="measured gamma_hat (bootstrap interval)")


def write_phase_diagrams(results: list[BatchResult], folder: Path) -> list[Path]:
    groups: dict[tuple, list[BatchResult]] = defaultdict(list)
    for r in results:
        groups[_combination(r)].append(r)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, group in groups.items():
        path = folder / f"phase_diagram__{_slug(key)}.png"
        phase_diagram(group, path)
        paths.append(path)
    return paths


@hookimpl(tryfirst=True)
def harness_run_finished(event: RunFinished) -> None:
    if event.results:
        write_phase_diagrams(event.results, event.run.store_path / "artifacts")
