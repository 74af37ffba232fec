"""The plugin objects each hook family returns.

Every plugin is a small frozen dataclass with a ``name``, a one-line
``description`` and a pydantic ``params`` model that validates the
parameters a spec gives it.  The core only ever talks to these objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict


class NoParams(BaseModel):
    """Parameter model of a plugin that takes no parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Activation:
    """An elementwise activation ``sigma``.

    ``function(z, params)`` must be elementwise and differentiable by autograd
    away from its ``kinks`` (points where the derivative jumps, such as 0 for
    ReLU).  ``derivative`` may be given to avoid autograd; ``kappa`` may give
    ``E[sigma'(z)^2]`` in closed form so that quadrature can be checked.
    """

    name: str
    description: str
    function: Callable[[torch.Tensor, Any], torch.Tensor]
    params: type[BaseModel] = NoParams
    derivative: Callable[[torch.Tensor, Any], torch.Tensor] | None = None
    kappa: Callable[[Any], float] | None = None
    kinks: tuple[float, ...] = ()


@dataclass(frozen=True)
class DataSample:
    """Inputs drawn by a data model, and labels when the data set has its own."""

    x: torch.Tensor
    labels: torch.Tensor | None = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataModel:
    """A distribution of inputs ``x`` in ``R^d``.

    ``sample(n, d, generator, device, dtype, params)`` returns an ``(n, d)``
    tensor or a :class:`DataSample`.  ``population_spectrum(d, params)``
    returns the eigenvalues of the population covariance when they are known
    (the predictors need them) and ``None`` otherwise.

    A data model whose loss is not an empirical risk (the infinite-sample
    limit) gives ``objective(net, models, teacher_width, d, params,
    teacher_activation)``,
    returning an object with the interface of
    :class:`harness.network.Objective`; the runner then trains on it instead.
    """

    name: str
    description: str
    sample: Callable[..., torch.Tensor | DataSample]
    params: type[BaseModel] = NoParams
    population_spectrum: Callable[[int, Any], np.ndarray | None] | None = None
    objective: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Optimizer:
    """Trains a batch of independent models at once.

    ``minimize(objective, theta, params, stopping)`` receives an
    :class:`harness.objective.Objective` over ``B`` models, their stacked
    parameters ``theta`` of shape ``(B, P)`` and a
    :class:`harness.optim_loop.Stopping`; it returns an
    :class:`harness.optim_loop.OptimResult`.  Most optimizers are step rules
    handed to :func:`harness.optim_loop.run_step_rule`, which owns the
    per-model stopping and divergence logic.
    """

    name: str
    description: str
    minimize: Callable[..., Any]
    params: type[BaseModel] = NoParams


@dataclass(frozen=True)
class PredictionContext:
    """What a gamma* predictor may use.

    ``spectrum`` holds the eigenvalues of the population covariance
    (``None`` when the data model does not know it); ``kappa`` is the
    activation's ``E[sigma'(z)^2]``.
    """

    delta: float
    n: int
    d: int
    kappa: float
    activation: str
    gamma_teacher: float
    spectrum: np.ndarray | None = None


@dataclass(frozen=True)
class Prediction:
    """A predicted critical ratio, or the reason there is none."""

    value: float | None
    reason: str = ""

    @property
    def applicable(self) -> bool:
        return self.value is not None and not math.isnan(self.value)


@dataclass(frozen=True)
class Predictor:
    """A formula for the critical width ratio ``gamma* = m / n``."""

    name: str
    description: str
    predict: Callable[[PredictionContext], Prediction]
    source: str = ""


@dataclass(frozen=True)
class Executor:
    """Runs batch tasks and yields their results as they finish.

    ``execute(tasks, run_batch)`` calls ``run_batch(task)`` for every task,
    wherever it likes, and yields ``(task, result)`` pairs in the driver.
    """

    name: str
    description: str
    execute: Callable[..., Any]
