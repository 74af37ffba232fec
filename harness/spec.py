"""Experiment specs: pydantic models loaded from YAML."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import HarnessError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """An evenly spaced grid, linear or logarithmic, both ends included."""

    start: float
    stop: float
    num: int = Field(ge=1)
    scale: Literal["lin", "log"] = "lin"

    @model_validator(mode="after")
    def _positive_for_log(self) -> Range:
        if self.scale == "log" and (self.start <= 0 or self.stop <= 0):
            raise ValueError("a log range needs start > 0 and stop > 0")
        return self

    def values(self) -> list[float]:
        if self.scale == "log":
            return [float(v) for v in np.geomspace(self.start, self.stop, self.num)]
        return [float(v) for v in np.linspace(self.start, self.stop, self.num)]


def _grid_values(value: Any) -> list[float]:
    if isinstance(value, Range):
        return value.values()
    return [float(v) for v in value]


_WIDTH_EXPR = re.compile(r"^k\s*(?:([+-])\s*(\d+))?$")


def _width_value(expr: int | str, teacher_width: int) -> int:
    if isinstance(expr, int):
        return expr
    match = _WIDTH_EXPR.match(expr.strip())
    sign, offset = match.group(1), int(match.group(2) or 0)
    return teacher_width + (-offset if sign == "-" else offset)


class Grid(_Strict):
    """The sample sizes, ``delta = d/n`` and the student widths to sweep.

    Widths are given either as ratios ``gamma = m/n`` or directly as
    ``width``: integers, or ``k``, ``k+1``, ``k-2``... relative to the
    teacher's width ``k``.
    """

    n: list[int] = Field(min_length=1)
    delta: list[float] | Range
    gamma: list[float] | Range | None = None
    width: list[int | str] | None = None

    @field_validator("width")
    @classmethod
    def _width_exprs(cls, v: list[int | str] | None) -> list[int | str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("needs at least one width")
        for item in v:
            if isinstance(item, str) and not _WIDTH_EXPR.match(item.strip()):
                raise ValueError(f"{item!r} is not a width: use an integer or k, k+1, k-1, ...")
            if isinstance(item, int) and item < 1:
                raise ValueError("every width must be at least 1")
        return v

    @model_validator(mode="after")
    def _one_width_axis(self) -> Grid:
        if (self.gamma is None) == (self.width is None):
            raise ValueError("give exactly one of gamma (ratios m/n) or width (neuron counts)")
        return self

    @field_validator("n")
    @classmethod
    def _n_positive(cls, v: list[int]) -> list[int]:
        if any(x < 2 for x in v):
            raise ValueError("every n must be at least 2")
        return v

    @field_validator("delta", "gamma")
    @classmethod
    def _positive(cls, v: list[float] | Range | None) -> list[float] | Range | None:
        if v is None:
            return v
        values = _grid_values(v)
        if not values:
            raise ValueError("needs at least one value")
        if any(x <= 0 for x in values):
            raise ValueError("every value must be positive")
        return v

    def deltas(self) -> list[float]:
        return _grid_values(self.delta)

    def widths(self, n: int, teacher_width: int) -> list[int]:
        """Distinct student widths at sample size ``n``, in grid order.

        Ratios are rounded to whole neurons (at least one); two grid values
        that round to the same width would train the same model twice and
        count it as two independent runs, so each width appears once.
        """
        if self.width is not None:
            widths = [_width_value(w, teacher_width) for w in self.width]
            if min(widths) < 1:
                raise HarnessError(
                    f"grid.width {self.width} gives {min(widths)} neurons with teacher width {teacher_width}; "
                    "every width must be at least 1"
                )
        else:
            widths = [max(1, round(g * n)) for g in _grid_values(self.gamma)]
        return list(dict.fromkeys(widths))

    def size(self) -> int:
        return len(self.width) if self.width is not None else len(_grid_values(self.gamma))


class PluginRef(_Strict):
    """A plugin by name, with the parameters its own model validates."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}[{inner}]"


class Teacher(_Strict):
    """The network that labels the data: same form as the student."""

    gamma: float = Field(0.5, gt=0, description="teacher width ratio m* / n")
    width: int | None = Field(None, ge=1, description="teacher width m*; overrides gamma")
    activation: PluginRef = PluginRef(name="relu")
    noise: float = Field(0.0, ge=0, description="std of Gaussian label noise, after scaling")

    def width_at(self, n: int) -> int:
        return self.width if self.width is not None else max(1, round(self.gamma * n))


class Training(_Strict):
    max_steps: int = Field(5000, ge=1)
    dtype: Literal["float32", "float64"] = "float32"
    device: str = Field("cpu", pattern=r"^(cpu|auto|cuda(:\d+)?)$", description="cpu, cuda, cuda:N or auto")
    check_every: int = Field(50, ge=1, description="steps between convergence checks")


class Refinement(_Strict):
    """An optimizer run in float64 after training, to reach a critical point."""

    optimizer: PluginRef
    max_steps: int = Field(50, ge=1)


class PerturbCheck(_Strict):
    """Retrain spurious and stuck end points from small random kicks; a loss drop refutes a minimum."""

    trials: int = Field(4, ge=1, description="random kicks per end point")
    scale: float = Field(1e-3, gt=0, description="standard deviation of each kick, per parameter")
    steps: int = Field(500, ge=1, description="training steps after each kick, same optimizer")
    min_drop: float = Field(1e-3, gt=0, description="relative loss drop that counts as an escape")


class Classification(_Strict):
    loss_tol: float = Field(1e-6, gt=0, description="loss at or below this is a global minimum")
    grad_tol: float = Field(1e-5, gt=0, description="gradient norm at or below this is critical")
    eig_tol: float = Field(1e-6, gt=0, description="smallest eigenvalue magnitude taken as non-zero")
    eig_tol_grad_factor: float = Field(
        10.0, ge=0, description="eigenvalue tolerance grows to this times the gradient norm"
    )
    kink_tol: float = Field(1e-6, gt=0, description="|w.x - kink| below this counts as on a kink")
    divergence_factor: float = Field(
        1e6, gt=1, description="a final loss above this multiple of the initial loss counts as diverged"
    )


class SpectrumSettings(_Strict):
    dense_limit: int = Field(4000, ge=1, description="largest parameter count for dense eigvalsh")


class Analysis(_Strict):
    bootstrap: int = Field(200, ge=0, description="bootstrap resamples for the gamma_hat interval")
    confidence: float = Field(0.9, gt=0, lt=1)


class Tracking(_Strict):
    enabled: bool = True
    experiment: str | None = Field(None, description="MLflow experiment; default: the spec name")


class Spec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seeds: int | list[int] = 3
    grid: Grid
    activations: list[PluginRef] = Field(default_factory=lambda: [PluginRef(name="relu")], min_length=1)
    data_models: list[PluginRef] = Field(default_factory=lambda: [PluginRef(name="gaussian")], min_length=1)
    optimizers: list[PluginRef] = Field(default_factory=lambda: [PluginRef(name="gd")], min_length=1)
    teacher: Teacher = Teacher()
    training: Training = Training()
    refine: Refinement | None = None
    perturb_check: PerturbCheck | None = None
    classify: Classification = Classification()
    spectrum: SpectrumSettings = SpectrumSettings()
    analysis: Analysis = Analysis()
    tracking: Tracking = Tracking()

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int) and v < 1:
            raise ValueError("needs at least one seed")
        if isinstance(v, list) and not v:
            raise ValueError("needs at least one seed")
        return v

    @model_validator(mode="after")
    def _no_repeats(self) -> Spec:
        seeds = self.seed_list()
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds repeat: a repeated seed trains the same model twice")
        for field in ("activations", "data_models", "optimizers"):
            labels = [ref.label for ref in getattr(self, field)]
            if len(set(labels)) != len(labels):
                raise ValueError(f"{field} lists the same plugin with the same params twice")
        if self.teacher.width is not None and "gamma" in self.teacher.model_fields_set:
            raise ValueError("teacher: give gamma or width, not both")
        return self

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def digest(self) -> str:
        """Stable hash of everything that changes results."""
        payload = self.model_dump(mode="json", exclude={"description", "tracking"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def combinations(self) -> list[tuple[PluginRef, PluginRef, PluginRef, int, float]]:
        return list(
            itertools.product(
                self.activations, self.data_models, self.optimizers, self.grid.n, self.grid.deltas()
            )
        )


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides; values are parsed as YAML."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise HarnessError(f"--set {item!r}: expected dotted.key=value, e.g. training.max_steps=200")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise HarnessError(f"--set {item!r}: {part!r} is not a section of the spec")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise HarnessError(f"--set {item!r}: the value is not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    return raw


def format_validation_error(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the spec:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise HarnessError(f"cannot read spec {path}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise HarnessError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: a spec must be a YAML mapping, got {type(raw).__name__}")
    return raw


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    """Read, override and validate a spec; raise :class:`SpecError` listing every problem."""
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides or [])
    return parse_spec(raw, str(path))


def parse_spec(raw: dict[str, Any], source: str = "spec") -> Spec:
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_validation_error(source, exc)) from exc


class SpecError(HarnessError):
    """A spec that failed validation; the message lists every problem."""
