"""Built-in data models.

Every model samples in float64 on the CPU from the generator it is given,
then moves the draw to the requested device and dtype, so a cell's data do
not depend on where it runs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness import DataModel, DataSample, HarnessError, hookimpl
from harness.covariance import CovarianceParams, covariance_spectrum, impose_covariance


class AnisotropicParams(CovarianceParams):
    """A covariance as for the other models, but anisotropic unless told otherwise."""

    condition_number: float = Field(10.0, description="s_max / s_min, exactly; 1 gives isotropic data")


class StudentTParams(CovarianceParams):
    """Degrees of freedom of the entries, and the covariance they are mixed into."""

    nu: float = Field(3.0, gt=0, description="degrees of freedom; the tails decay like |t|^-(nu+1)")
    allow_infinite_variance: bool = Field(
        False, description="accept nu <= 2, where the entries have no variance to scale to 1"
    )

    @model_validator(mode="after")
    def _finite_variance_unless_allowed(self) -> StudentTParams:
        if self.nu <= 2 and not self.allow_infinite_variance:
            raise ValueError(
                f"nu = {self.nu} gives entries with infinite variance, which cannot be scaled "
                f"to unit variance; choose nu > 2, or set allow_infinite_variance: true to "
                f"use unscaled entries"
            )
        return self


class DigitsParams(BaseModel):
    """Preprocessing of the digits images, and where their labels come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    whiten: bool = Field(
        False, description="scale every principal component to unit variance (covariance I)"
    )
    labels: Literal["teacher", "digits"] = Field(
        "teacher", description="teacher: label by the teacher network; digits: the true digit 0-9"
    )


def _gaussian(n, d, generator, device, dtype, params):
    return torch.randn(n, d, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)


def _anisotropic(n, d, generator, device, dtype, params: CovarianceParams):
    z = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return impose_covariance(z, params, generator).to(device=device, dtype=dtype)


def _rademacher(n, d, generator, device, dtype, params: CovarianceParams):
    z = 2.0 * torch.randint(0, 2, (n, d), generator=generator, dtype=torch.float64) - 1.0
    return impose_covariance(z, params, generator).to(device=device, dtype=dtype)


def _uniform(n, d, generator, device, dtype, params: CovarianceParams):
    z = math.sqrt(3.0) * (2.0 * torch.rand(n, d, generator=generator, dtype=torch.float64) - 1.0)
    return impose_covariance(z, params, generator).to(device=device, dtype=dtype)


def _student_t(n, d, generator, device, dtype, params: StudentTParams):
    # torch has no seeded Student-t sampler, so numpy draws it from a seed taken off the generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    t = np.random.default_rng(seed).standard_t(params.nu, size=(n, d))
    z = torch.from_numpy(t)

    notes = {}
    if params.nu > 2:
        z = z * math.sqrt((params.nu - 2.0) / params.nu)
    else:
        notes["variance"] = "infinite"
    x = impose_covariance(z, params, generator)
    return DataSample(x.to(device=device, dtype=dtype), notes=notes)


def _student_t_spectrum(d: int, params: StudentTParams) -> np.ndarray | None:
    return covariance_spectrum(d, params) if params.nu > 2 else None


@dataclass(frozen=True)
class _DigitsPCA:
    """The digits data set, centred, with its principal axes in decreasing order of variance."""

    centred: np.ndarray
    variances: np.ndarray
    axes: np.ndarray
    targets: np.ndarray
    rank: int


#: principal variances below this fraction of the largest are zero (constant pixels)
_RANK_TOLERANCE = 1e-10


@functools.lru_cache(maxsize=1)
def _digits_pca() -> _DigitsPCA:
    # imported here: scikit-learn is slow to import and only this data model needs it
    from sklearn.datasets import load_digits

    digits = load_digits()
    centred = digits.data - digits.data.mean(axis=0)

    # the data set is the population, so its covariance divides by the number of rows
    variances, axes = np.linalg.eigh(centred.T @ centred / len(centred))
    variances, axes = variances[::-1], axes[:, ::-1]

    # an eigenvector's sign is arbitrary; fixing it keeps projections the same on every machine
    largest = np.argmax(np.abs(axes), axis=0)
    axes = axes * np.sign(axes[largest, np.arange(axes.shape[1])])

    rank = int(np.sum(variances > _RANK_TOLERANCE * variances[0]))
    targets = digits.target.astype(np.float64)
    for cached in (centred, variances, axes, targets):
        cached.setflags(write=False)
    return _DigitsPCA(centred, variances, axes, targets, rank)


@functools.lru_cache(maxsize=32)
def _digits_projection(d: int, whiten: bool) -> tuple[np.ndarray, np.ndarray]:
    """All rows projected on the top ``d`` principal axes and scaled, with their spectrum."""
    pca = _digits_pca()
    if not 1 <= d <= pca.rank:
        pixels = pca.axes.shape[0]
        raise HarnessError(
            f"digits: d = {d} is out of range; the {pixels}-pixel images vary in only "
            f"{pca.rank} directions ({pixels - pca.rank} pixels are constant), so choose "
            f"delta and n with 1 <= d <= {pca.rank}"
        )

    variances = pca.variances[:d]
    projected = pca.centred @ pca.axes[:, :d]
    if whiten:
        projected, spectrum = projected / np.sqrt(variances), np.ones(d)
    else:
        projected, spectrum = projected / math.sqrt(variances.mean()), variances / variances.mean()

    projected.setflags(write=False)
    spectrum.setflags(write=False)
    return projected, spectrum


def _digits(n, d, generator, device, dtype, params: DigitsParams):
    projected, _ = _digits_projection(d, params.whiten)
    total = len(projected)
    if n > total:
        raise HarnessError(
            f"digits has {total} images and draws without replacement, so n can be at most "
            f"{total}; got n = {n}"
        )

    # fancy indexing copies, so the cached arrays stay read-only and untouched
    rows = torch.randperm(total, generator=generator)[:n].numpy()
    x = torch.from_numpy(projected[rows])
    labels = None
    if params.labels == "digits":
        labels = torch.from_numpy(_digits_pca().targets[rows]).to(device=device)
    return DataSample(x.to(device=device, dtype=dtype), labels=labels)


def _digits_spectrum(d: int, params: DigitsParams) -> np.ndarray:
    return _digits_projection(d, params.whiten)[1].copy()


@hookimpl
def harness_data_models() -> list[DataModel]:
    return [
        DataModel(
            "gaussian",
            "isotropic Gaussian inputs, x ~ N(0, I_d)",
            _gaussian,
            population_spectrum=lambda d, params: np.ones(d),
        ),
        DataModel(
            "anisotropic",
            "Gaussian N(0, U diag(s) U^T), s of a chosen shape with s_max/s_min = condition_number "
            "and mean eigenvalue 1",
            _anisotropic,
            params=AnisotropicParams,
            population_spectrum=covariance_spectrum,
        ),
        DataModel(
            "rademacher",
            "Sigma^{1/2} z, z with i.i.d. +-1 entries (isotropic unless a covariance is given)",
            _rademacher,
            params=CovarianceParams,
            population_spectrum=covariance_spectrum,
        ),
        DataModel(
            "uniform",
            "Sigma^{1/2} z, z with i.i.d. uniform entries on [-sqrt 3, sqrt 3] (unit variance)",
            _uniform,
            params=CovarianceParams,
            population_spectrum=covariance_spectrum,
        ),
        DataModel(
            "student-t",
            "Sigma^{1/2} z, z with i.i.d. heavy-tailed Student-t(nu) entries, unit variance when nu > 2",
            _student_t,
            params=StudentTParams,
            population_spectrum=_student_t_spectrum,
        ),
        DataModel(
            "digits",
            "scikit-learn's hand-written digits, centred, PCA-projected to d <= 61, mean eigenvalue 1, "
            "rows drawn without replacement",
            _digits,
            params=DigitsParams,
            population_spectrum=_digits_spectrum,
        ),
    ]
