"""Activation complexity ``kappa(sigma) = E[sigma'(z)^2]`` for ``z ~ N(0, 1)``.

Two independent quadratures: Gauss-Hermite on the autograd derivative
(split into Gauss-Legendre pieces at kinks, where Gauss-Hermite would
converge only slowly), and scipy's adaptive quadrature told where the kinks
are.  They must agree to ``AGREEMENT_TOL``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import integrate

from harness.activation_math import BoundActivation

AGREEMENT_TOL = 1e-6

#: beyond |z| = TAIL the Gaussian weight is below 1e-43
TAIL = 14.0
_HERMITE_NODES = 200
_LEGENDRE_NODES = 400


@dataclass(frozen=True)
class KappaResult:
    name: str
    quadrature: float
    adaptive: float
    closed_form: float | None

    @property
    def agree(self) -> bool:
        return abs(self.quadrature - self.adaptive) <= AGREEMENT_TOL

    @property
    def value(self) -> float:
        return self.quadrature


def _squared_derivative(act: BoundActivation, z: np.ndarray) -> np.ndarray:
    zt = torch.as_tensor(z, dtype=torch.float64)
    return act.first(zt).detach().numpy() ** 2


def _gaussian_density(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)


def kappa_quadrature(act: BoundActivation) -> float:
    """Gauss-Hermite (smooth) or piecewise Gauss-Legendre (kinked) quadrature."""
    if not act.plugin.kinks:
        nodes, weights = np.polynomial.hermite_e.hermegauss(_HERMITE_NODES)
        return float(weights @ _squared_derivative(act, nodes) / math.sqrt(2.0 * math.pi))

    # each smooth piece between kinks is integrated on its own
    edges = [-TAIL, *sorted(k for k in act.plugin.kinks if -TAIL < k < TAIL), TAIL]
    nodes, weights = np.polynomial.legendre.leggauss(_LEGENDRE_NODES)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        z = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
        total += 0.5 * (hi - lo) * float(weights @ (_squared_derivative(act, z) * _gaussian_density(z)))
    return total


def kappa_adaptive(act: BoundActivation) -> float:
    """scipy's adaptive quadrature on the same integrand, as an independent check."""

    def integrand(z: float) -> float:
        return float(_squared_derivative(act, np.array([z]))[0] * _gaussian_density(np.array([z]))[0])

    points = sorted(k for k in act.plugin.kinks if -TAIL < k < TAIL) or None
    value, _ = integrate.quad(integrand, -TAIL, TAIL, points=points, limit=200, epsabs=1e-13, epsrel=1e-12)
    return float(value)


def compute_kappa(act: BoundActivation) -> KappaResult:
    closed = act.plugin.kappa(act.params) if act.plugin.kappa is not None else None
    return KappaResult(act.name, kappa_quadrature(act), kappa_adaptive(act), closed)
