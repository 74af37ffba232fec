"""Evaluate every installed gamma* predictor, as a table or as curves over delta.

The CLI's ``predict`` command and the phase-diagram plot both use this: the
table says what each formula predicts and why a formula has no value, the
curves put the predictions over measured phase diagrams.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from pydantic import BaseModel, ValidationError

from harness.activation_math import bind
from harness.errors import HarnessError
from harness.kappa import compute_kappa
from harness.plugin_types import DataModel, PredictionContext
from harness.registry import Registry

log = logging.getLogger(__name__)

_LINE_STYLES = ("-", "--", "-.", ":")


@dataclass(frozen=True)
class PredictionRow:
    """One predictor's answer: ``value`` is ``None`` when it has none, ``note`` says why."""

    predictor: str
    value: float | None
    source: str
    note: str


@dataclass(frozen=True)
class PredictionSetting:
    """Everything but delta: resolved plugins, validated parameters and kappa, computed once."""

    activation: str
    kappa: float
    data_model: DataModel
    data_params: BaseModel
    n: int
    gamma_teacher: float

    def context(self, delta: float) -> PredictionContext:
        """The predictors' inputs at one delta, with ``d = round(delta n)``."""
        if not (math.isfinite(delta) and delta > 0.0):
            raise HarnessError(f"delta must be a positive number, got {delta!r}")
        d = round(delta * self.n)
        if d < 1:
            raise HarnessError(f"delta = {delta:g} with n = {self.n} gives d = 0 input dimensions; raise delta or n")
        return PredictionContext(
            delta=delta,
            n=self.n,
            d=d,
            kappa=self.kappa,
            activation=self.activation,
            gamma_teacher=self.gamma_teacher,
            spectrum=self._spectrum(d),
        )

    def _spectrum(self, d: int) -> np.ndarray | None:
        if self.data_model.population_spectrum is None:
            return None
        spectrum = self.data_model.population_spectrum(d, self.data_params)
        return None if spectrum is None else np.asarray(spectrum, dtype=float)


def _validated(kind: str, name: str, model: type[BaseModel], params: dict[str, Any] | None) -> BaseModel:
    try:
        return model.model_validate(params or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}" for e in exc.errors())
        raise HarnessError(f"{kind} {name!r}: {problems}") from exc


def resolve_setting(
    registry: Registry,
    activation: str = "relu",
    data_model: str = "gaussian",
    data_params: dict[str, Any] | None = None,
    activation_params: dict[str, Any] | None = None,
    n: int = 100,
    gamma_teacher: float = 0.5,
) -> PredictionSetting:
    """Look the plugins up, validate their parameters and compute kappa."""
    if not (isinstance(n, int) and n >= 1):
        raise HarnessError(f"n must be a positive integer, got {n!r}")
    if not (math.isfinite(gamma_teacher) and gamma_teacher > 0.0):
        raise HarnessError(f"gamma_teacher must be a positive number, got {gamma_teacher!r}")

    activation_plugin = registry.get("activation", activation)
    model = registry.get("data_model", data_model)
    bound = bind(
        activation_plugin,
        _validated("activation", activation, activation_plugin.params, activation_params).model_dump(),
    )
    kappa = compute_kappa(bound)
    if not kappa.agree:
        log.warning(
            "kappa(%s): the two quadratures disagree (%.10g vs %.10g); using the first",
            activation,
            kappa.quadrature,
            kappa.adaptive,
        )
    return PredictionSetting(
        activation=activation,
        kappa=kappa.value,
        data_model=model,
        data_params=_validated("data model", data_model, model.params, data_params),
        n=n,
        gamma_teacher=gamma_teacher,
    )


def predict_all(registry: Registry, ctx: PredictionContext) -> list[PredictionRow]:
    """Ask every installed predictor; a NaN from a third-party plugin is reported as no value."""
    rows = []
    for predictor in registry.all("predictor"):
        prediction = predictor.predict(ctx)
        value, note = prediction.value, prediction.reason
        if value is not None and math.isnan(value):
            value, note = None, note or "the formula evaluated to NaN"
        rows.append(PredictionRow(predictor.name, value, predictor.source, note))
    return rows


def prediction_table(
    registry: Registry,
    delta: float,
    activation: str = "relu",
    data_model: str = "gaussian",
    data_params: dict[str, Any] | None = None,
    activation_params: dict[str, Any] | None = None,
    n: int = 100,
    gamma_teacher: float = 0.5,
) -> list[PredictionRow]:
    """Every predictor's gamma* at one delta."""
    setting = resolve_setting(registry, activation, data_model, data_params, activation_params, n, gamma_teacher)
    return predict_all(registry, setting.context(delta))


def predictions_over(
    registry: Registry, setting: PredictionSetting, deltas: Sequence[float]
) -> dict[float, list[PredictionRow]]:
    """Every predictor's gamma* at each delta, the input :func:`draw_predictions` takes."""
    return {float(delta): predict_all(registry, setting.context(float(delta))) for delta in deltas}


def describe_context(ctx: PredictionContext, data_model: str) -> str:
    """One heading line naming what the table's predictions depend on."""
    if ctx.spectrum is None:
        data = f"{data_model} (population spectrum unknown)"
    else:
        spectrum = np.asarray(ctx.spectrum, dtype=float)
        smallest = float(spectrum.min())
        condition = math.inf if smallest <= 0.0 else float(spectrum.max()) / smallest
        data = f"{data_model} (condition number {condition:.4g})"
    return (
        f"delta = {ctx.delta:g}, n = {ctx.n}, d = {ctx.d}; "
        f"activation {ctx.activation} (kappa = {ctx.kappa:.4f}); data {data}; gamma_teacher = {ctx.gamma_teacher:g}"
    )


def format_table(rows: Sequence[PredictionRow]) -> str:
    """Plain-text columns: predictor, gamma*, source, note."""
    header = ("predictor", "gamma*", "source", "note")
    cells = [header] + [
        (row.predictor, "n/a" if row.value is None else f"{row.value:.4f}", row.source, row.note) for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header) - 1)]
    lines = []
    for line in cells:
        padded = [line[0].ljust(widths[0]), line[1].rjust(widths[1]), line[2].ljust(widths[2]), line[3]]
        lines.append("  ".join(padded).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths + [len(header[3])]))
    return "\n".join(lines)


def draw_predictions(ax: Axes, predictions_by_delta: Mapping[float, Sequence[PredictionRow]]) -> list[Line2D]:
    """Draw each predictor as a labelled curve of gamma* over delta on ``ax``.

    Deltas where a predictor has no value leave a gap; a predictor with no
    value anywhere is left out of the legend.
    """
    deltas = sorted(predictions_by_delta)
    names: list[str] = []
    values: dict[str, dict[float, float]] = {}
    for delta in deltas:
        for row in predictions_by_delta[delta]:
            if row.predictor not in values:
                names.append(row.predictor)
                values[row.predictor] = {}
            if row.value is not None:
                values[row.predictor][delta] = row.value

    lines = []
    for index, name in enumerate(names):
        if not values[name]:
            continue
        curve = [values[name].get(delta, math.nan) for delta in deltas]
        # curves often coincide (e.g. every C2/C3/C5 formula for ReLU on
        # isotropic data), so line styles vary as well as colours
        style = _LINE_STYLES[index % len(_LINE_STYLES)]
        (line,) = ax.plot(deltas, curve, style, marker="." if len(deltas) < 30 else None, label=name)
        lines.append(line)
    return lines


def plot_predictions(
    registry: Registry,
    deltas: Sequence[float],
    path: str | Path,
    *,
    activation: str = "relu",
    data_model: str = "gaussian",
    data_params: dict[str, Any] | None = None,
    activation_params: dict[str, Any] | None = None,
    n: int = 100,
    gamma_teacher: float = 0.5,
) -> Path:
    """Write a figure of every applicable predictor's gamma* against delta."""
    setting = resolve_setting(registry, activation, data_model, data_params, activation_params, n, gamma_teacher)
    return write_prediction_plot(registry, setting, deltas, path)


def write_prediction_plot(
    registry: Registry, setting: PredictionSetting, deltas: Sequence[float], path: str | Path
) -> Path:
    """:func:`plot_predictions` for an already resolved setting."""
    figure = Figure(figsize=(8, 5), layout="constrained")
    ax = figure.add_subplot()
    draw_predictions(ax, predictions_over(registry, setting, deltas))
    ax.set_xlabel("delta = d / n")
    ax.set_ylabel("predicted gamma* = m / n")
    ax.set_title(f"gamma* predictions: {setting.activation}, {setting.data_model.name} data, n = {setting.n}")
    ax.set_ylim(bottom=0.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")

    path = Path(path)
    try:
        figure.savefig(path)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot write the plot to {path}: {exc}") from exc
    return path
