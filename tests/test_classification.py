"""Classification of constructed points whose nature is known exactly."""

from __future__ import annotations

import math

import torch

from harness.activation_math import bind
from harness.endpoints import classify, eigenvalue_tolerance, measure_spectrum
from harness.network import Objective, TwoLayerBatch
from harness.spec import Classification

TOL = Classification()


def _objective(registry, act_name: str, widths: list[int], x: torch.Tensor, y: torch.Tensor) -> Objective:
    act = bind(registry.get("activation", act_name))
    net = TwoLayerBatch(torch.tensor(widths), x.shape[-1], act)
    return Objective(net, x, y)


def _classify_model(objective: Objective, theta: torch.Tensor, b: int = 0) -> tuple[str, object]:
    loss, grad = objective.loss_and_grad(theta)
    g = float(grad[b].norm())
    tol = eigenvalue_tolerance(g, TOL)
    curvature = objective.curvature(theta, b)
    spectrum = measure_spectrum(curvature, tol, dense_limit=10_000)
    return classify(float(loss[b]), g, spectrum.lambda_min, tol, TOL), spectrum


def test_teacher_equal_student_is_global(registry):
    gen = torch.Generator().manual_seed(0)
    n, d, m = 20, 5, 4
    x = torch.randn(1, n, d, generator=gen, dtype=torch.float64)
    w = torch.randn(m, d, generator=gen, dtype=torch.float64)
    a = torch.randn(m, generator=gen, dtype=torch.float64)
    act = bind(registry.get("activation", "relu"))
    y = act(x[0] @ w.T) @ a / math.sqrt(m)

    objective = _objective(registry, "relu", [m], x, y[None])
    theta = objective.net.join(w[None], a[None])
    state, spectrum = _classify_model(objective, theta)

    assert state == "global"
    assert float(objective.loss(theta)[0]) < 1e-28
    # at an interpolating point the Hessian is J^T J / n: no negative curvature
    assert spectrum.lambda_min > -1e-12


def test_origin_of_tanh_network_is_a_saddle(registry):
    """At theta = 0 with tanh the gradient vanishes exactly, and the (w_j, a_j) block
    of the residual term is [[0, c], [c^T, 0]] with c = -(1/n) m^{-1/2} sum_i y_i x_i,
    so the Hessian has the eigenvalue -|c| < 0."""
    gen = torch.Generator().manual_seed(1)
    n, d, m = 30, 4, 3
    x = torch.randn(1, n, d, generator=gen, dtype=torch.float64)
    y = x[0, :, 0] + 0.5 * torch.randn(n, generator=gen, dtype=torch.float64)
    objective = _objective(registry, "tanh", [m], x, y[None])
    theta = torch.zeros(1, objective.net.num_params, dtype=torch.float64)

    _, grad = objective.loss_and_grad(theta)
    assert float(grad.norm()) == 0.0
    state, spectrum = _classify_model(objective, theta)

    c = (y[:, None] * x[0]).mean(dim=0) / math.sqrt(m)
    assert state == "saddle"
    assert math.isclose(spectrum.lambda_min, -float(c.norm()), rel_tol=1e-10)
    assert spectrum.index == m  # one negative direction per neuron


def test_eigenvalue_tolerance_grows_with_gradient():
    """A near-critical minimum whose rescaling direction carries curvature of order
    the gradient must not be called a saddle."""
    grad_norm = 5e-6
    lam = -2 * grad_norm
    tol = eigenvalue_tolerance(grad_norm, TOL)
    assert classify(0.1, grad_norm, lam, tol, TOL) == "spurious_min"
    assert classify(0.1, grad_norm, -1e-2, tol, TOL) == "saddle"


def test_classes_by_loss_gradient_and_finiteness():
    assert classify(math.nan, 1.0, 0.0, 1e-6, TOL) == "diverged"
    assert classify(1e-9, 1.0, -5.0, 1e-6, TOL) == "global"  # loss decides, never lambda_min
    assert classify(0.3, 1e-2, 0.0, 1e-6, TOL) == "unconverged"


def test_near_kink_count(registry):
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    objective = _objective(registry, "relu", [1], x, torch.zeros(1, 3, dtype=torch.float64))
    theta = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)  # w = (1, 0): sample 2 is on the kink
    assert objective.curvature(theta, 0).near_kink_samples(1e-9) == 1


def test_lanczos_extremes_match_dense_spectrum(registry):
    gen = torch.Generator().manual_seed(4)
    n, d, m = 15, 6, 8
    x = torch.randn(1, n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(1, n, generator=gen, dtype=torch.float64)
    objective = _objective(registry, "tanh", [m], x, y)
    theta = torch.randn(1, objective.net.num_params, generator=gen, dtype=torch.float64)
    curvature = objective.curvature(theta, 0)
    dense = measure_spectrum(curvature, 1e-8, dense_limit=10_000)
    lanczos = measure_spectrum(curvature, 1e-8, dense_limit=10)
    assert lanczos.method == "lanczos"
    assert math.isclose(lanczos.lambda_min, dense.lambda_min, rel_tol=1e-8, abs_tol=1e-10)
    assert math.isclose(lanczos.lambda_max, dense.lambda_max, rel_tol=1e-8)


def test_a_loss_that_exploded_is_diverged_even_if_finite():
    assert classify(4.6e36, 5.8e27, math.nan, 1.0, TOL, initial_loss=0.5) == "diverged"
    assert classify(0.4, 1e-2, 0.0, 1e-6, TOL, initial_loss=0.5) == "unconverged"
