"""The built-in optimizers on realizable problems whose global minimum is known: the teacher."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from pydantic import ValidationError

import plugins.activations
import plugins.optimizers
from harness.activation_math import bind
from harness.network import Objective, TwoLayerBatch
from harness.optim_loop import OptimResult, Stopping
from harness.registry import Registry, build_plugin_manager
from harness.schedules import Schedule


@pytest.fixture(scope="module")
def registry() -> Registry:
    pm = build_plugin_manager(load_entry_points=False)
    pm.register(plugins.activations)
    pm.register(plugins.optimizers)
    return Registry(pm)


def minimize(
    registry: Registry, name: str, objective: Objective, theta: torch.Tensor, stopping: Stopping, **params
) -> OptimResult:
    optimizer = registry.get("optimizer", name)
    return optimizer.minimize(objective, theta, optimizer.params.model_validate(params), stopping)


def teacher_problem(
    registry: Registry,
    widths: tuple[int, ...],
    d: int,
    n: int,
    seed: int,
    activation: str = "tanh",
    input_scale: tuple[float, ...] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Objective, torch.Tensor]:
    """Labels from a teacher of the student's own width: the teacher is a global minimum with loss 0."""
    net = TwoLayerBatch(torch.tensor(widths), d, bind(registry.get("activation", activation)))
    gen = torch.Generator().manual_seed(seed)
    mask = net.mask.to(torch.float64)
    w = torch.randn(net.num_models, net.max_width, d, generator=gen, dtype=torch.float64) * mask[..., None]
    a = torch.randn(net.num_models, net.max_width, generator=gen, dtype=torch.float64) * mask
    teacher = net.join(w, a)

    x = torch.randn(net.num_models, n, d, generator=gen, dtype=torch.float64)
    if input_scale is not None:
        x = x * torch.tensor(input_scale, dtype=torch.float64)[:, None, None]
    y = net.forward(teacher, x)
    return Objective(net, x.to(dtype), y.to(dtype)), teacher.to(dtype)


def perturbed(objective: Objective, theta: torch.Tensor, size: float, seed: int = 99) -> torch.Tensor:
    """``theta`` plus Gaussian noise on the real parameters; padding stays zero."""
    gen = torch.Generator().manual_seed(seed)
    net = objective.net
    real = net.join(net.mask[..., None].expand(-1, -1, net.d), net.mask).to(theta.dtype)
    return theta + size * torch.randn(theta.shape, generator=gen, dtype=theta.dtype) * real


def loss_and_grad_norm(objective: Objective, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loss, grad = objective.astype(torch.float64).loss_and_grad(theta.to(torch.float64))
    return loss, grad.norm(dim=1)


@pytest.fixture(scope="module")
def easy(registry):
    """Widths 1 and 2, a well-conditioned teacher minimum for first-order methods (float32)."""
    objective, teacher = teacher_problem(registry, (1, 2), d=2, n=30, seed=16)
    return objective, teacher, perturbed(objective, teacher, 0.1)


@pytest.fixture(scope="module")
def exact(registry):
    """Widths 3 and 5 in float64, so the teacher's loss is zero to rounding."""
    objective, teacher = teacher_problem(registry, (3, 5), d=4, n=40, seed=3, dtype=torch.float64)
    return objective, teacher, perturbed(objective, teacher, 0.1)


# ---------------------------------------------------------------- registration and parameters


def test_all_optimizers_registered(registry):
    assert {"gd", "sgd", "adam", "lbfgs", "newton"} <= set(registry.names("optimizer"))


@pytest.mark.parametrize(
    "name, params",
    [
        ("gd", {"lr": 0.0}),
        ("gd", {"momentum": 1.0}),
        ("sgd", {"batch_size": 0}),
        ("adam", {"betas": (1.0, 0.9)}),
        ("lbfgs", {"line_search": "exact"}),
        ("newton", {"damping": -1.0}),
        ("gd", {"learning_rate": 0.1}),
        ("gd", {"schedule": {"kind": "constant", "decay": 0.5}}),
    ],
)
def test_invalid_params_are_rejected(registry, name, params):
    with pytest.raises(ValidationError):
        registry.get("optimizer", name).params.model_validate(params)


def test_schedule_factors():
    assert Schedule().factor(500, 1000) == 1.0
    step = Schedule(kind="step", every=10, decay=0.5)
    assert [step.factor(t, 100) for t in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    assert Schedule(kind="exponential", every=10, decay=0.5).factor(5, 100) == pytest.approx(0.5**0.5)
    cosine = Schedule(kind="cosine", floor=0.1)
    assert [cosine.factor(t, 100) for t in (0, 50, 100, 200)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


def test_schedule_names_fields_it_does_not_use():
    with pytest.raises(ValidationError, match="does not use floor"):
        Schedule(kind="step", floor=0.2)


# ---------------------------------------------------------------- step rules


def test_gd_reaches_the_teacher(registry, easy):
    objective, _, start = easy
    result = minimize(registry, "gd", objective, start, Stopping(1000, 1e-6, 0.0, 10), lr=2.0)

    loss, _ = loss_and_grad_norm(objective, result.theta)
    assert result.met_tolerance.all() and not result.diverged.any()
    assert (loss <= 1e-6).all()
    assert result.learning_rate == 2.0
    assert result.trace_steps[0] == 0 and (result.trace_loss[0] > 1e-4).all()


def test_momentum_and_schedule_follow_the_heavy_ball_update(registry, easy):
    objective, _, start = easy
    schedule = {"kind": "step", "every": 1, "decay": 0.5}
    result = minimize(
        registry, "gd", objective, start, Stopping(2, 0.0, 0.0, 1), lr=0.3, momentum=0.9, schedule=schedule
    )

    _, g0 = objective.loss_and_grad(start)
    theta1 = start - 0.3 * g0
    _, g1 = objective.loss_and_grad(theta1)
    theta2 = theta1 - 0.3 * 0.5 * (0.9 * g0 + g1)
    assert torch.allclose(result.theta, theta2, rtol=1e-5, atol=1e-6)


def test_momentum_needs_fewer_steps(registry, easy):
    objective, _, start = easy
    stopping = Stopping(1000, 1e-6, 0.0, 10)
    plain = minimize(registry, "gd", objective, start, stopping, lr=0.5)
    heavy = minimize(registry, "gd", objective, start, stopping, lr=0.5, momentum=0.9)

    assert plain.met_tolerance.all() and heavy.met_tolerance.all()
    assert (heavy.steps * 2 < plain.steps).all()


def test_a_decaying_schedule_slows_descent(registry, easy):
    objective, _, start = easy
    stopping = Stopping(200, 0.0, 0.0, 200)
    constant = minimize(registry, "gd", objective, start, stopping, lr=1.0)
    decayed = minimize(registry, "gd", objective, start, stopping, lr=1.0, schedule={"kind": "cosine"})

    assert (constant.trace_loss[-1] < decayed.trace_loss[-1]).all()
    assert (decayed.trace_loss[-1] < decayed.trace_loss[0]).all()


def test_divergence_is_per_model(registry):
    """Inputs ten times larger make model 0's curvature too high for the shared rate; model 1 is unaffected."""
    objective, teacher = teacher_problem(
        registry, (1, 2), d=3, n=40, seed=1, activation="relu", input_scale=(10.0, 1.0)
    )
    start = perturbed(objective, teacher, 0.1)
    result = minimize(registry, "gd", objective, start, Stopping(400, 1e-6, 0.0, 10), lr=2.0)

    assert result.diverged.tolist() == [True, False]
    assert result.met_tolerance.tolist() == [False, True]
    assert result.steps[0] < result.steps[1] <= 400
    assert torch.isfinite(result.theta[1]).all()


def test_adam_reaches_the_teacher(registry, easy):
    objective, _, start = easy
    result = minimize(registry, "adam", objective, start, Stopping(1000, 1e-6, 0.0, 10), lr=0.01)

    assert result.met_tolerance.all()
    assert result.learning_rate is None


def test_adam_first_step_is_lr_times_the_gradient_sign(registry, easy):
    objective, _, start = easy
    result = minimize(registry, "adam", objective, start, Stopping(1, 0.0, 0.0, 1), lr=0.01, eps=1e-12)

    _, grad = objective.loss_and_grad(start)
    assert torch.allclose(result.theta, start - 0.01 * grad.sign(), rtol=1e-5, atol=1e-6)


class RecordingObjective(Objective):
    """Remembers the sample indices of every mini-batch it is asked for."""

    def __init__(self, objective: Objective) -> None:
        super().__init__(objective.net, objective.x, objective.y)
        self.batches: list[torch.Tensor] = []

    def loss_and_grad(self, theta, rows=None):
        if rows is not None:
            self.batches.append(rows.clone())
        return super().loss_and_grad(theta, rows)


def test_sgd_reshuffles_each_model_every_epoch(registry, easy):
    objective, _, start = easy
    n, batch_size, epochs = objective.num_samples, 10, 3
    per_epoch = n // batch_size
    recording = RecordingObjective(objective)
    minimize(
        registry, "sgd", recording, start, Stopping(epochs * per_epoch, 0.0, 0.0, 1000), lr=0.1, batch_size=batch_size
    )

    assert all(rows.shape == (2, batch_size) for rows in recording.batches)
    orders = torch.stack(recording.batches[: epochs * per_epoch]).view(epochs, per_epoch, 2, batch_size)
    orders = orders.permute(0, 2, 1, 3).reshape(epochs, 2, n)
    assert (orders.sort(dim=2).values == torch.arange(n)).all()
    assert not torch.equal(orders[0, 0], orders[0, 1])
    assert not torch.equal(orders[0, 0], orders[1, 0])


def test_sgd_is_deterministic_per_seed(registry, easy):
    objective, _, start = easy
    stopping = Stopping(40, 0.0, 0.0, 100)

    def run(seed: int, global_seed: int) -> torch.Tensor:
        torch.manual_seed(global_seed)
        return minimize(registry, "sgd", objective, start, stopping, lr=0.1, batch_size=10, seed=seed).theta

    assert torch.equal(run(0, 1), run(0, 2))
    assert not torch.equal(run(0, 1), run(1, 1))


def test_sgd_with_momentum_reaches_the_teacher(registry, easy):
    objective, _, start = easy
    result = minimize(
        registry, "sgd", objective, start, Stopping(800, 1e-6, 0.0, 10), lr=0.5, batch_size=10, momentum=0.5
    )

    assert result.met_tolerance.all()


def test_sgd_batch_larger_than_the_data_uses_all_samples(registry, easy, caplog):
    objective, _, start = easy
    recording = RecordingObjective(objective)
    with caplog.at_level(logging.WARNING):
        minimize(registry, "sgd", recording, start, Stopping(2, 0.0, 0.0, 100), lr=0.1, batch_size=1000)

    assert "exceeds the 30 samples" in caplog.text
    assert recording.batches[0].shape == (2, 30)


# ---------------------------------------------------------------- L-BFGS


@pytest.mark.parametrize("line_search", ["strong_wolfe", "backtracking"])
def test_lbfgs_reaches_the_teacher(registry, easy, line_search):
    objective, teacher, start = easy
    objective64 = objective.astype(torch.float64)
    result = minimize(
        registry, "lbfgs", objective64, start.double(), Stopping(200, 0.0, 1e-10, 10), line_search=line_search
    )

    _, grad_norm = loss_and_grad_norm(objective64, result.theta)
    assert result.met_tolerance.all() and (grad_norm <= 1e-10).all()
    assert (result.theta - teacher.double()).norm(dim=1).max() < 1e-5
    assert result.trace_steps[0] == 0 and result.trace_steps[-1] == result.steps.max()


def test_lbfgs_works_in_float64_and_marks_a_broken_model_diverged(registry, easy):
    objective, _, start = easy
    start = start.clone()
    start[0, 0] = math.nan
    result = minimize(registry, "lbfgs", objective, start, Stopping(200, 1e-12, 0.0, 10))

    assert result.theta.dtype == torch.float64
    assert result.diverged.tolist() == [True, False]
    assert result.met_tolerance.tolist() == [False, True]
    assert result.steps[0] == 0


# ---------------------------------------------------------------- Newton refiner

REFINE = Stopping(50, 0.0, 1e-12, 1)


def test_newton_refines_a_perturbed_teacher_to_machine_precision(registry, exact):
    objective, _, start = exact
    result = minimize(registry, "newton", objective, start, REFINE)

    loss, grad_norm = loss_and_grad_norm(objective, result.theta)
    assert result.met_tolerance.all()
    assert (grad_norm < 1e-10).all() and (loss < 1e-20).all()
    assert len(result.trace_steps) == int(result.steps.max()) + 1


def test_newton_leaves_a_critical_point_alone(registry, exact):
    objective, teacher, _ = exact
    result = minimize(registry, "newton", objective, teacher, REFINE)

    assert torch.equal(result.theta, teacher)
    assert result.steps.tolist() == [0, 0]


def test_newton_stays_at_a_nearby_saddle(registry, exact):
    """Zero weights are a saddle of a tanh network; a point next to it is refined onto it, not into a minimum."""
    objective, _, _ = exact
    saddle = torch.zeros(2, objective.net.num_params, dtype=torch.float64)
    start = perturbed(objective, saddle, 1e-4)
    result = minimize(registry, "newton", objective, start, REFINE)

    loss, grad_norm = loss_and_grad_norm(objective, result.theta)
    assert (grad_norm < 1e-10).all()
    assert (result.theta - saddle).norm(dim=1).max() < 1e-3
    assert torch.allclose(loss, 0.5 * objective.y.square().mean(dim=1), rtol=1e-9, atol=0.0)


def test_newton_stops_and_warns_before_moving_far(registry, exact, caplog):
    objective, _, start = exact
    far = perturbed(objective, start, 1.0, seed=5)
    with caplog.at_level(logging.WARNING):
        result = minimize(registry, "newton", objective, far, REFINE, max_distance=0.05)

    assert (result.theta - far).norm(dim=1).max() <= 0.05
    assert not result.met_tolerance.any()
    assert "max_distance" in caplog.text


def test_newton_marks_a_broken_model_diverged(registry, exact):
    objective, _, start = exact
    start = start.clone()
    start[1, 0] = math.nan
    result = minimize(registry, "newton", objective, start, REFINE)

    assert result.diverged.tolist() == [False, True]
    assert result.met_tolerance.tolist() == [True, False]
