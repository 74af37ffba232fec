"""Population covariance spectra and the ``Sigma^{1/2}`` that imposes them.

Several data models draw ``z`` with i.i.d. unit-variance entries and return
``x = Sigma^{1/2} z`` with ``Sigma = U diag(s) U^T`` (the setting of the
paper's sub-Gaussian universality condition).  The spectrum ``s`` has a
chosen shape, an exact condition number ``s_max / s_min`` and mean 1, so
that ``E|x|^2 = d`` as for isotropic data and only the geometry changes.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.errors import HarnessError

SpectrumShape = Literal["geometric", "two-level", "power-law"]


class CovarianceParams(BaseModel):
    """The covariance part of a data model's parameters (isotropic by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spectrum: SpectrumShape = Field(
        "geometric",
        description="eigenvalue profile: geometric, two-level (half at s_max, half at s_min) "
        "or power-law (s_i proportional to i^-alpha)",
    )
    condition_number: float = Field(
        1.0, description="s_max / s_min, exactly; 1 gives isotropic data"
    )
    rotate: bool = Field(
        False,
        description="rotate the eigenbasis by a Haar-random orthogonal U drawn from the "
        "sampling generator (so one U per data model, n, d and seed)",
    )

    @field_validator("condition_number")
    @classmethod
    def _condition_number_at_least_one(cls, value: float) -> float:
        if not math.isfinite(value) or value < 1.0:
            raise ValueError(
                f"condition_number is s_max / s_min and must be a finite number >= 1, "
                f"got {value}; use 1 for isotropic data"
            )
        return value

    @property
    def isotropic(self) -> bool:
        return self.condition_number == 1.0


def covariance_spectrum(d: int, params: CovarianceParams) -> np.ndarray:
    """Eigenvalues of ``Sigma`` in decreasing order, with mean 1 and ratio ``condition_number``."""
    kappa = params.condition_number
    if params.isotropic:
        return np.ones(d)
    if d < 2:
        raise HarnessError(
            f"a condition number of {kappa} needs d >= 2 input dimensions, got d = {d}; "
            f"raise delta or n, or set condition_number: 1"
        )

    if params.spectrum == "geometric":
        unnormalised = kappa ** (-np.arange(d) / (d - 1))
    elif params.spectrum == "two-level":
        unnormalised = np.where(np.arange(d) < d // 2, 1.0, 1.0 / kappa)
    else:
        alpha = math.log(kappa) / math.log(d)
        unnormalised = np.arange(1, d + 1, dtype=np.float64) ** -alpha

    # pin both ends so that s_max / s_min is kappa up to one rounding
    unnormalised[0], unnormalised[-1] = 1.0, 1.0 / kappa
    return unnormalised / unnormalised.mean()


def haar_orthogonal(d: int, generator: torch.Generator) -> torch.Tensor:
    """A ``d x d`` orthogonal matrix from the Haar measure, in float64 on the CPU."""
    gaussian = torch.randn(d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    # fixing the signs of R's diagonal makes Q Haar-distributed rather than biased
    return q * torch.sign(torch.diagonal(r))


def impose_covariance(
    z: torch.Tensor, params: CovarianceParams, generator: torch.Generator
) -> torch.Tensor:
    """Return rows ``x = Sigma^{1/2} z`` for rows ``z`` with identity covariance.

    ``Sigma^{1/2} = U diag(sqrt(s)) U^T`` is the symmetric root, so an
    unrotated covariance only rescales coordinates and Rademacher or uniform
    entries keep their support up to scale.  The rotation, when asked for,
    is drawn after ``z`` from the same generator.
    """
    if params.isotropic:
        return z

    root_s = torch.from_numpy(np.sqrt(covariance_spectrum(z.shape[1], params)))
    if not params.rotate:
        return z * root_s

    u = haar_orthogonal(z.shape[1], generator)
    return z @ (u * root_s) @ u.T
