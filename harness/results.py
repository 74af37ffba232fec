"""Result records: one per end point, one per batch, stored as JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: end-state classes, in the order summaries show them
STATES = ("global", "spurious_min", "saddle", "unconverged", "diverged")


@dataclass
class EndPoint:
    """Where one network stopped, and what its Hessian looks like there.

    ``gamma`` is the realised ratio ``width / n`` (grid values are rounded to
    whole neurons).

    Spectrum fields are NaN when not measured (a diverged model, or a network
    too large for the dense solver, where Lanczos gives only the extremes).
    """

    gamma: float
    width: int
    seed: int
    state: str
    loss: float
    grad_norm: float
    steps: int
    met_tolerance: bool
    rel_loss_decrease: float
    lr_lambda_max: float
    lambda_min: float
    lambda_max: float
    index: float
    nullity: float
    min_abs_nonzero: float
    gram_lambda_min: float
    eig_tol_used: float
    near_kink_samples: int
    hessian_method: str
    refined: bool
    perturb_loss_drop: float = math.nan
    perturb_escaped: bool | None = None


@dataclass
class Transition:
    """Where the success fraction crosses 1/2 in gamma, from a logistic fit in log gamma.

    ``gamma_hat`` is ``None`` when the grid holds no transition; ``status``
    then says why.
    """

    gamma_hat: float | None
    ci_low: float | None
    ci_high: float | None
    width: float | None
    status: str
    bootstrap_failures: int = 0


@dataclass
class CurvePoint:
    gamma: float
    width: int
    runs: int
    successes: int
    counts: dict[str, int]

    @property
    def success_rate(self) -> float:
        return self.successes / self.runs if self.runs else math.nan


@dataclass
class PredictionRecord:
    value: float | None
    reason: str
    source: str


@dataclass
class BatchResult:
    """Everything measured for one (activation, data model, optimizer, n, delta)."""

    batch_id: str
    activation: str
    data_model: str
    optimizer: str
    n: int
    delta: float
    d: int
    teacher_width: int
    kappa: float
    kappa_check: float
    predictions: dict[str, PredictionRecord]
    endpoints: list[EndPoint]
    curve: list[CurvePoint]
    transition: Transition
    elapsed_s: float
    device: str
    data_notes: dict[str, Any] = field(default_factory=dict)

    @property
    def unconverged_fraction(self) -> float:
        if not self.endpoints:
            return 0.0
        return sum(e.state == "unconverged" for e in self.endpoints) / len(self.endpoints)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BatchResult:
        raw = dict(raw)
        raw["predictions"] = {k: PredictionRecord(**v) for k, v in raw["predictions"].items()}
        raw["endpoints"] = [EndPoint(**e) for e in raw["endpoints"]]
        raw["curve"] = [CurvePoint(**c) for c in raw["curve"]]
        raw["transition"] = Transition(**raw["transition"])
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})
