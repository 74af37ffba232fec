"""The ``population`` data model: the infinite-sample limit for Gaussian inputs.

Instead of an empirical risk on ``n`` samples, the student trains on the
exact expectation ``L = (1/2) E_x[(f(x) - f*(x))^2]``, ``x ~ N(0, I_d)``, in
closed form for ReLU (:mod:`harness.population`).  The defaults are the
setting of Safran & Shamir (2018): a teacher of ``k`` orthonormal neurons
with unit output weights, a student whose output weights are frozen at 1,
and no output scale.

There are no samples, so ``n`` only fixes the geometry: ``d = round(delta n)``
and, unless ``teacher.width`` is given, the teacher width
``k = round(teacher.gamma n)``.  ``sample`` still draws ``N(0, I)`` inputs
(the runner draws them, and tests use them for Monte Carlo checks); they do
not enter the loss.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from harness import DataModel, HarnessError, hookimpl
from harness.network import TwoLayerBatch
from harness.population import PopulationObjective
from harness.seeding import generator


class PopulationParams(BaseModel):
    """The teacher, and which of the student's parameters train."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fixed_output_weights: bool = Field(
        True, description="freeze the student's output weights at 1: zero gradient, left out of the Hessian"
    )
    teacher: Literal["identity", "orthonormal", "gaussian"] = Field(
        "identity",
        description="identity: v_i = e_i; orthonormal: rows of a random orthogonal matrix "
        "(both need d >= k); gaussian: v_i ~ N(0, I/d). Output weights are 1 in every case",
    )
    scale: Literal["none", "sqrt"] = Field(
        "none",
        description="output scale: none (s = 1, as in the classic studies) or sqrt "
        "(m^-1/2 for the student, k^-1/2 for the teacher, as elsewhere in the harness)",
    )


def _gaussian(n, d, generator, device, dtype, params):
    return torch.randn(n, d, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)


def teacher_rows(kind: str, k: int, d: int, seed: int) -> torch.Tensor:
    """The ``k x d`` teacher of one seed, in float64.

    Gaussian inputs and the runner's initialisation are both rotation
    invariant, so ``identity`` and ``orthonormal`` give the same distribution
    of outcomes; the random rotation is there to check exactly that.
    """
    if kind != "gaussian" and k > d:
        raise HarnessError(
            f"population: a teacher of {k} orthonormal neurons needs d >= {k}, got d = {d}; "
            f"raise delta, lower the teacher width, or use teacher: gaussian"
        )
    if kind == "identity":
        return torch.eye(k, d, dtype=torch.float64)

    gen = generator("population-teacher", d, k, seed)
    if kind == "gaussian":
        return torch.randn(k, d, generator=gen, dtype=torch.float64) / d**0.5

    # QR of a Gaussian matrix, signs fixed by R's diagonal, is Haar-distributed
    q, r = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).T.contiguous()


def _objective(
    net: TwoLayerBatch,
    models: list[tuple[float, int, int]],
    teacher_width: int,
    d: int,
    params: PopulationParams,
    teacher_activation: str,
) -> PopulationObjective:
    """The population objective of a batch; ``models`` holds (gamma, width, seed) per model."""
    for role, name in (("student", net.activation.name), ("teacher", teacher_activation)):
        if name != "relu":
            raise HarnessError(
                f"population: the closed-form loss exists for relu only, but the {role} activation is "
                f"{name!r}; use relu, or an empirical data model such as gaussian"
            )

    seeds = sorted({seed for _, _, seed in models})
    rows = {seed: teacher_rows(params.teacher, teacher_width, d, seed) for seed in seeds}
    teacher = torch.stack([rows[seed] for _, _, seed in models])

    widths = net.widths.to(torch.float64)
    if params.scale == "sqrt":
        student_scale, teacher_scale = widths.rsqrt(), teacher_width**-0.5
    else:
        student_scale, teacher_scale = torch.ones_like(widths), 1.0
    return PopulationObjective(net, teacher, student_scale, teacher_scale, params.fixed_output_weights)


@hookimpl
def harness_data_models() -> list[DataModel]:
    return [
        DataModel(
            "population",
            "infinite-sample limit for x ~ N(0, I_d): exact ReLU loss, gradient and Hessian via the "
            "arc-cosine kernel; n only sets d and the teacher width",
            _gaussian,
            params=PopulationParams,
            population_spectrum=lambda d, params: np.ones(d),
            objective=_objective,
        )
    ]
