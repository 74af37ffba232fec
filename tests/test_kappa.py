"""kappa(sigma) = E[sigma'(z)^2] against integrals computed independently here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from harness.activation_math import bind
from harness.kappa import compute_kappa


def _phi(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _sigmoid(z: float) -> float:
    return 0.5 * (1 + math.tanh(0.5 * z))


# hand-written derivatives: independent of the autograd path under test
DERIVATIVES = {
    "tanh": lambda z: 1 - math.tanh(z) ** 2,
    "gelu": lambda z: special.ndtr(z) + z * _phi(z),
    "silu": lambda z: _sigmoid(z) * (1 + z * (1 - _sigmoid(z))),
    "sigmoid": lambda z: _sigmoid(z) * (1 - _sigmoid(z)),
    "softplus": lambda z: _sigmoid(z),
    "erf": lambda z: 2 / math.sqrt(math.pi) * math.exp(-z * z),
}


def _reference(name: str) -> float:
    f = DERIVATIVES[name]
    value, _ = integrate.quad(lambda z: f(z) ** 2 * _phi(z), -np.inf, np.inf, epsabs=1e-13, epsrel=1e-12)
    return value


def test_relu_kappa_is_one_half(registry):
    k = compute_kappa(bind(registry.get("activation", "relu")))
    assert k.quadrature == pytest.approx(0.5, abs=1e-12)
    assert k.adaptive == pytest.approx(0.5, abs=1e-12)


def test_leaky_relu_kappa_closed_form(registry):
    k = compute_kappa(bind(registry.get("activation", "leaky_relu"), {"slope": 0.2}))
    assert k.quadrature == pytest.approx((1 + 0.2**2) / 2, abs=1e-12)


@pytest.mark.parametrize("name", sorted(DERIVATIVES))
def test_smooth_kappa_matches_independent_integral(registry, name):
    k = compute_kappa(bind(registry.get("activation", name)))
    assert k.quadrature == pytest.approx(_reference(name), abs=1e-10)
    assert k.agree


def test_erf_closed_form(registry):
    k = compute_kappa(bind(registry.get("activation", "erf")))
    assert k.quadrature == pytest.approx(4 / (math.pi * math.sqrt(5)), abs=1e-12)
