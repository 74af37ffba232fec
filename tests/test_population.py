"""The closed-form population loss, its derivatives, its degenerate points, and the runner on it."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from harness import HarnessError
from harness.activation_math import bind
from harness.batch import plan, run_batch
from harness.endpoints import classify
from harness.network import TwoLayerBatch
from harness.optim_loop import Stopping
from harness.population import smallest_angle
from harness.registry import Registry
from harness.seeding import generator
from harness.spec import Classification, parse_spec

#: Monte Carlo draws for the loss check
MC_SAMPLES = 1_000_000
#: central-difference step for first and second derivatives
FD_STEP = 1e-6


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


@pytest.fixture(scope="module")
def population(registry):
    return registry.get("data_model", "population")


def make_objective(registry, population, widths, d, teacher_width, seeds=None, activation="relu", **params):
    net = TwoLayerBatch(torch.tensor(widths), d, bind(registry.get("activation", activation)))
    seeds = seeds or [0] * len(widths)
    models = [(m / teacher_width, m, s) for m, s in zip(widths, seeds)]
    return population.objective(net, models, teacher_width, d, population.params(**params), "relu")


def theta_of(objective, w: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
    """Padded parameters of a one-model batch."""
    a = torch.ones(w.shape[0], dtype=torch.float64) if a is None else a
    return objective.net.join(w[None], a[None])


def reference_loss(w, a, teacher, s, s_teacher):
    """The loss written independently, with ``acos`` of dot products: fine away from degenerate angles."""
    z = torch.cat([w, teacher])
    c = torch.cat([s * a, -s_teacher * torch.ones(teacher.shape[0], dtype=w.dtype)])
    norm = z.norm(dim=1)
    off = ~torch.eye(len(z), dtype=torch.bool)
    cos = torch.where(off, z @ z.T / (norm[:, None] * norm[None, :]), 0.0)
    t = torch.acos(cos)
    k = norm[:, None] * norm[None, :] * (torch.sin(t) + (math.pi - t) * torch.cos(t)) / (2 * math.pi)
    k = torch.where(off, k, torch.diag(norm**2 / 2))
    return 0.5 * c @ k @ c


def real(objective, theta):
    return objective.net.real_params(theta, 0)


def fd_gradient(objective, theta):
    p = real(objective, theta)
    out = torch.zeros_like(p)
    for i in range(p.numel()):
        step = torch.zeros_like(p)
        step[i] = FD_STEP
        up = objective.loss(objective.net.with_real_params(theta, 0, p + step))
        down = objective.loss(objective.net.with_real_params(theta, 0, p - step))
        out[i] = (up - down)[0] / (2 * FD_STEP)
    return out


def fd_hessian(objective, theta, size):
    """Central differences of the analytic gradient, over the first ``size`` parameters."""
    p = real(objective, theta)
    out = torch.zeros(size, size, dtype=torch.float64)
    for i in range(size):
        step = torch.zeros_like(p)
        step[i] = FD_STEP
        up = real(objective, objective.loss_and_grad(objective.net.with_real_params(theta, 0, p + step))[1])
        down = real(objective, objective.loss_and_grad(objective.net.with_real_params(theta, 0, p - step))[1])
        out[:, i] = (up - down)[:size] / (2 * FD_STEP)
    return out


def random_point(objective, m, d, seed, spread=0.7):
    gen = generator("population-test", m, d, seed)
    w = spread * torch.randn(m, d, generator=gen, dtype=torch.float64)
    a = torch.randn(m, generator=gen, dtype=torch.float64)
    return theta_of(objective, w, a)


# --- the loss ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "teacher", "noise"),
    [("none", "identity", 0.1), ("sqrt", "orthonormal", 0.1), ("none", "gaussian", 0.25)],
)
def test_loss_matches_monte_carlo(registry, population, scale, teacher, noise):
    k, m, d = 3, 4, 5
    objective = make_objective(registry, population, [m], d, k, teacher=teacher, scale=scale)
    v = objective.teacher[0]
    gen = generator("population-test-student", scale, teacher)
    w = torch.cat([v, torch.zeros(1, d, dtype=torch.float64)])
    w = w + noise * torch.randn(m, d, generator=gen, dtype=torch.float64)
    theta = objective.prepare_initial(theta_of(objective, w))

    gen = generator("population-mc", scale)
    x = population.sample(MC_SAMPLES, d, gen, "cpu", torch.float64, population.params())
    s, s_teacher = (m**-0.5, k**-0.5) if scale == "sqrt" else (1.0, 1.0)
    squared = 0.5 * (s * torch.relu(x @ w.T).sum(dim=1) - s_teacher * torch.relu(x @ v.T).sum(dim=1)) ** 2
    standard_error = float(squared.std()) / math.sqrt(MC_SAMPLES)

    closed = float(objective.loss(theta)[0])
    assert closed == pytest.approx(float(squared.mean()), abs=1e-3)
    assert 4 * standard_error < 1e-3


def test_a_student_equal_to_the_teacher_is_a_global_minimum(registry, population):
    k, d = 4, 6
    objective = make_objective(registry, population, [k], d, k, seeds=[3], teacher="orthonormal")
    theta = objective.prepare_initial(theta_of(objective, objective.teacher[0].clone()))

    loss, grad = objective.loss_and_grad(theta)
    lambda_min = float(torch.linalg.eigvalsh(objective.curvature(theta, 0).dense())[0])
    assert float(loss[0]) <= 1e-14
    assert float(grad.norm()) <= 1e-13
    assert lambda_min >= -1e-12
    tol = Classification()
    assert classify(float(loss[0]), float(grad.norm()), lambda_min, tol.eig_tol, tol) == "global"


# --- first and second derivatives ---------------------------------------------


@pytest.mark.parametrize("fixed", [True, False])
@pytest.mark.parametrize("scale", ["none", "sqrt"])
def test_gradient_matches_finite_differences_and_autograd(registry, population, fixed, scale):
    objective = make_objective(registry, population, [4], 3, 2, fixed_output_weights=fixed, scale=scale)
    theta = objective.prepare_initial(random_point(objective, 4, 3, seed=1))
    grad = real(objective, objective.loss_and_grad(theta)[1])

    with torch.enable_grad():
        leaf = theta.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(objective.loss(leaf).sum(), leaf)
    auto, numeric = real(objective, auto), fd_gradient(objective, theta)
    # the loss still depends on a frozen a: its gradient is withheld, not zero
    trained = 12 if fixed else 16
    if fixed:
        assert torch.all(grad[trained:] == 0)

    assert torch.allclose(grad[:trained], numeric[:trained], atol=1e-8)
    assert torch.allclose(grad[:trained], auto[:trained], atol=1e-12)


@pytest.mark.parametrize("fixed", [True, False])
@pytest.mark.parametrize("scale", ["none", "sqrt"])
def test_hessian_matches_autograd_of_the_closed_form(registry, population, fixed, scale):
    m, d, k = 4, 3, 2
    objective = make_objective(registry, population, [m], d, k, fixed_output_weights=fixed, scale=scale)
    theta = objective.prepare_initial(random_point(objective, m, d, seed=2))
    s, s_teacher = (m**-0.5, k**-0.5) if scale == "sqrt" else (1.0, 1.0)
    teacher = objective.teacher[0]

    def loss(p):
        return reference_loss(p[: m * d].view(m, d), p[m * d :], teacher, s, s_teacher)

    # torch.autograd.functional, not torch.func: the latter spends seconds compiling on first use
    expected = torch.autograd.functional.hessian(loss, real(objective, theta))
    hessian = objective.hessian(theta, 0)
    size = m * d if fixed else m * (d + 1)
    assert hessian.shape == (size, size)
    assert torch.allclose(hessian, expected[:size, :size], atol=1e-12)
    assert float(loss(real(objective, theta))) == pytest.approx(float(objective.loss(theta)[0]), abs=1e-13)


def test_hessian_matches_finite_differences_of_the_gradient(registry, population):
    objective = make_objective(
        registry, population, [5], 4, 3, fixed_output_weights=False, teacher="gaussian"
    )
    theta = random_point(objective, 5, 4, seed=3)
    hessian = objective.hessian(theta, 0)
    assert torch.allclose(hessian, fd_hessian(objective, theta, hessian.shape[0]), atol=1e-7)


def test_curvature_view_has_no_samples(registry, population):
    objective = make_objective(registry, population, [3], 3, 2)
    theta = objective.prepare_initial(random_point(objective, 3, 3, seed=4))
    curvature = objective.curvature(theta, 0)
    v = torch.randn(curvature.size, dtype=torch.float64, generator=generator("population-test-v"))

    assert curvature.size == 9
    assert torch.allclose(curvature.matvec(v), curvature.dense() @ v)
    assert math.isnan(curvature.gram_lambda_min())
    assert curvature.near_kink_samples(1e-6) == 0


# --- degenerate angles and dead neurons ----------------------------------------


def _degenerate_student(kind: str) -> torch.Tensor:
    """Three neurons against the teacher e_1, e_2 in d = 3, one of them degenerate."""
    other = [[0.3, 0.5, 0.2], [0.4, -0.1, 0.3]]
    first = {"parallel": [1.0, 0.0, 0.0], "opposite": [-1.0, 0.0, 0.0], "dead": [0.0, 0.0, 0.0]}[kind]
    return torch.tensor([first, *other], dtype=torch.float64)


@pytest.mark.parametrize("kind", ["parallel", "opposite"])
def test_hessian_is_continuous_at_angles_zero_and_pi(registry, population, kind):
    objective = make_objective(registry, population, [3], 3, 2, fixed_output_weights=False)
    a = torch.tensor([1.0, 0.7, -0.4], dtype=torch.float64)
    theta = theta_of(objective, _degenerate_student(kind), a)

    loss, grad = objective.loss_and_grad(theta)
    hessian = objective.hessian(theta, 0)
    assert math.isfinite(float(loss[0])) and torch.isfinite(grad).all() and torch.isfinite(hessian).all()
    # the returned limits are the derivatives: differences of the gradient across t = 0 or pi agree
    assert torch.allclose(hessian, fd_hessian(objective, theta, hessian.shape[0]), atol=1e-5)


def test_student_neuron_on_a_teacher_neuron_matches_the_teacher_exactly(registry, population):
    objective = make_objective(registry, population, [2], 3, 2)
    teacher = objective.teacher[0]
    theta = objective.prepare_initial(theta_of(objective, teacher.clone()))
    w = objective.net.split(theta)[0][0]

    assert smallest_angle(w, teacher) == 0.0
    assert float(objective.loss(theta)[0]) == 0.0


def test_dead_neuron_gets_finite_documented_values(registry, population):
    objective = make_objective(registry, population, [3], 3, 2, fixed_output_weights=False, scale="sqrt")
    a = torch.tensor([0.8, 0.7, -0.4], dtype=torch.float64)
    theta = theta_of(objective, _degenerate_student("dead"), a)

    loss, grad = objective.loss_and_grad(theta)
    hessian = objective.hessian(theta, 0)
    assert math.isfinite(float(loss[0])) and torch.isfinite(hessian).all()
    assert torch.all(grad[0, :3] == 0)

    alpha = a[0] / math.sqrt(3)
    assert torch.allclose(hessian[:3, :3], alpha**2 / 2 * torch.eye(3, dtype=torch.float64), atol=1e-15)
    assert torch.all(hessian[:3, 3:] == 0)


def test_padded_neurons_never_move(registry, population):
    objective = make_objective(registry, population, [2, 3], 3, 2, seeds=[0, 1], fixed_output_weights=False)
    w = torch.randn(2, 3, 3, dtype=torch.float64, generator=generator("population-test-pad"))
    w[0, 2] = 0.0
    theta = objective.net.join(w, torch.ones(2, 3, dtype=torch.float64))

    grad = objective.loss_and_grad(theta)[1]
    gw, ga = objective.net.split(grad)
    assert torch.all(gw[0, 2] == 0) and ga[0, 2] == 0
    assert objective.hessian(theta, 0).shape == (8, 8)


# --- the plugin ----------------------------------------------------------------


def test_orthonormal_teacher_is_seeded_and_orthonormal(registry, population):
    objective = make_objective(registry, population, [4, 4, 4], 6, 4, seeds=[0, 0, 1], teacher="orthonormal")
    rows = objective.teacher

    assert torch.allclose(rows[0] @ rows[0].T, torch.eye(4, dtype=torch.float64), atol=1e-14)
    assert torch.equal(rows[0], rows[1])
    assert not torch.allclose(rows[0], rows[2])
    assert population.population_spectrum(6, population.params()).tolist() == [1.0] * 6


def test_non_relu_activations_are_refused(registry, population):
    with pytest.raises(HarnessError, match="relu only.*student.*'tanh'"):
        make_objective(registry, population, [2], 3, 2, activation="tanh")

    net = TwoLayerBatch(torch.tensor([2]), 3, bind(registry.get("activation", "relu")))
    with pytest.raises(HarnessError, match="teacher activation is 'gelu'"):
        population.objective(net, [(1.0, 2, 0)], 2, 3, population.params(), teacher_activation="gelu")


def test_misuse_is_reported_clearly(registry, population):
    with pytest.raises(HarnessError, match="needs d >= 4"):
        make_objective(registry, population, [4], 3, 4, teacher="orthonormal")
    objective = make_objective(registry, population, [2], 3, 2)
    theta = random_point(objective, 2, 3, seed=5)
    sgd = registry.get("optimizer", "sgd")
    with pytest.raises(HarnessError, match="full-batch optimizer"):
        sgd.minimize(objective, theta, sgd.params(), Stopping(10, 1e-6, 1e-6))
    with pytest.raises(HarnessError, match="full-batch optimizer"):
        objective.loss(theta, rows=torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValidationError):
        population.params(teacher="random")


# --- the runner ----------------------------------------------------------------


def test_runner_trains_and_measures_on_the_population_loss():
    spec = parse_spec(
        {
            "name": "population-tiny",
            "seeds": 2,
            "grid": {"n": [3], "delta": [1.0], "width": ["k", "k+1"]},
            "data_models": ["population"],
            "optimizers": [{"name": "gd", "params": {"lr": 0.2}}],
            "teacher": {"gamma": 1.0},
            "training": {"max_steps": 3000, "dtype": "float64", "check_every": 50},
            "refine": {"optimizer": "newton", "max_steps": 20},
            "classify": {"loss_tol": 1e-6, "grad_tol": 1e-6},
            "analysis": {"bootstrap": 0},
            "tracking": {"enabled": False},
        }
    )
    result, eigenvalues = run_batch(plan(spec)[0])

    assert (result.d, result.teacher_width) == (3, 3)
    assert [e.width for e in result.endpoints] == [3, 3, 4, 4]
    assert {e.state for e in result.endpoints} <= {"global", "spurious_min", "saddle", "unconverged"}
    assert any(e.state == "global" for e in result.endpoints)
    for b, e in enumerate(result.endpoints):
        assert len(eigenvalues[str(b)]) == e.width * 3
        assert e.near_kink_samples == 0 and math.isnan(e.gram_lambda_min)
        assert e.refined and math.isfinite(e.lambda_min)
