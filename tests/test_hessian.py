"""The analytic Hessian equals torch.func.hessian of the loss, for smooth and ReLU activations."""

from __future__ import annotations

import pytest
import torch

from harness.activation_math import bind
from harness.hessian import hessian, hessian_vector_product, jacobian, point_terms


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu", "silu", "softplus", "leaky_relu"])
@pytest.mark.parametrize("seed", [0, 1])
def test_analytic_hessian_matches_autograd(registry, name, seed):
    gen = torch.Generator().manual_seed(seed)
    act = bind(registry.get("activation", name))
    n, d, m = 9, 4, 5
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    w = torch.randn(m, d, generator=gen, dtype=torch.float64)
    a = torch.randn(m, generator=gen, dtype=torch.float64)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        f = act(x @ theta[: m * d].view(m, d).T) @ theta[m * d :] / m**0.5
        return 0.5 * ((f - y) ** 2).mean()

    theta = torch.cat([w.reshape(-1), a])
    expected = torch.func.hessian(loss)(theta)
    terms = point_terms(act, w, a, x, y)
    assert torch.allclose(hessian(terms), expected, atol=1e-12, rtol=1e-10)

    v = torch.randn(theta.numel(), generator=gen, dtype=torch.float64)
    hv = hessian_vector_product(terms, jacobian(terms), v)
    assert torch.allclose(hv, expected @ v, atol=1e-12, rtol=1e-10)


def test_gauss_newton_part_is_psd_and_residual_part_vanishes_at_interpolation(registry):
    """At a zero-residual point the Hessian is J^T J / n exactly."""
    gen = torch.Generator().manual_seed(3)
    act = bind(registry.get("activation", "tanh"))
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    a = torch.randn(4, generator=gen, dtype=torch.float64)
    y = act(x @ w.T) @ a / 2.0
    terms = point_terms(act, w, a, x, y)
    jac = jacobian(terms)
    assert torch.allclose(hessian(terms), jac.T @ jac / 6, atol=1e-14)
    assert torch.linalg.eigvalsh(hessian(terms)).min() > -1e-12
