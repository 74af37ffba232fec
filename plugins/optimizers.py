"""Built-in optimizers, each over a batch of independent models.

``gd``, ``sgd`` and ``adam`` are step rules handed to
:func:`harness.optim_loop.run_step_rule`, which trains every model at once.
``lbfgs`` and the float64 refiner ``newton`` decide each model's step on
its own (see :func:`_lockstep` for why) under the same stopping rules.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness import Optimizer, hookimpl
from harness.network import Objective
from harness.optim_loop import OptimResult, Stopping, run_step_rule
from harness.schedules import Schedule
from harness.seeding import generator

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- parameters


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GDParams(_Params):
    lr: float = Field(0.1, gt=0, description="base learning rate")
    momentum: float = Field(0.0, ge=0, lt=1, description="heavy-ball momentum; 0 is plain gradient descent")
    schedule: Schedule = Field(default_factory=Schedule, description="learning-rate schedule")


class SGDParams(_Params):
    lr: float = Field(0.1, gt=0, description="base learning rate")
    batch_size: int = Field(32, ge=1, description="samples per step; capped at the number of samples")
    momentum: float = Field(0.0, ge=0, lt=1, description="heavy-ball momentum; 0 is plain SGD")
    seed: int = Field(0, description="shuffling seed, combined with each model's index in its batch")
    schedule: Schedule = Field(default_factory=Schedule, description="learning-rate schedule")


class AdamParams(_Params):
    lr: float = Field(1e-3, gt=0, description="base learning rate")
    betas: tuple[float, float] = Field((0.9, 0.999), description="decay rates of the first and second moments")
    eps: float = Field(1e-8, gt=0, description="added to the root second moment to avoid division by zero")
    schedule: Schedule = Field(default_factory=Schedule, description="learning-rate schedule")

    @field_validator("betas")
    @classmethod
    def _betas_in_unit_interval(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"each beta must be in [0, 1), got {list(betas)}")
        return betas


class LBFGSParams(_Params):
    history: int = Field(10, ge=1, description="curvature pairs kept for the inverse-Hessian estimate")
    line_search: Literal["strong_wolfe", "backtracking"] = Field(
        "strong_wolfe", description="strong-Wolfe bracketing, or Armijo backtracking by halving"
    )


class NewtonParams(_Params):
    """Damped Newton on the gradient, to polish an end point into the critical point next to it.

    Each step is ``-(H + mu I)^{-1} g``.  With small ``mu`` it converges to the
    nearest critical point of any kind, saddles included, which is what a
    refiner must do: classify the point training reached, not a better one.
    ``max_step`` keeps every step short, however ill-conditioned ``H + mu I``,
    and ``max_distance`` stops a model, with a warning, before it wanders far
    from where training left it.
    """

    damping: float = Field(
        1e-3, gt=0, description="initial mu; grows 10x on a rejected step, shrinks 10x on an accepted one"
    )
    max_step: float = Field(0.1, gt=0, description="longest parameter-space step; mu grows until the step fits")
    max_distance: float = Field(
        1.0, gt=0, description="a model stops, with a warning, before moving farther than this from its start"
    )


# ---------------------------------------------------------------- step rules (batched)


class _Shuffler:
    """Per-model mini-batches: each model walks its own permutation of the samples, reshuffled every epoch.

    Orders depend only on the seed, the model's index, ``n`` and
    ``batch_size``, never on global RNG state.  An epoch has
    ``n // batch_size`` full batches; the ``n % batch_size`` samples its
    permutation leaves over sit that epoch out.  Orders are drawn for about 64
    steps at a time, so the loop over models is not per step.
    """

    def __init__(self, num_models: int, num_samples: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.num_models = num_models
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.batches_per_epoch = num_samples // batch_size
        self.epochs_per_draw = max(1, math.ceil(64 / self.batches_per_epoch))
        self._draw = -1
        self._orders = torch.empty(0)

    def rows(self, t: int) -> torch.Tensor:
        epoch, position = divmod(t, self.batches_per_epoch)
        draw, within = divmod(epoch, self.epochs_per_draw)
        if draw != self._draw:
            self._orders = self._permutations(draw)
            self._draw = draw
        start = position * self.batch_size
        return self._orders[:, within, start : start + self.batch_size]

    def _permutations(self, draw: int) -> torch.Tensor:
        """``(B, epochs_per_draw, n)`` sample orders, drawn on CPU so every device sees the same."""
        orders = [
            torch.rand(
                self.epochs_per_draw,
                self.num_samples,
                dtype=torch.float64,
                generator=generator("sgd", self.seed, b, draw),
            ).argsort(dim=1)
            for b in range(self.num_models)
        ]
        return torch.stack(orders).to(self.device)


class _HeavyBall:
    """``v <- momentum v + g``, ``theta <- theta - lr_t v``: plain descent when momentum is 0."""

    def __init__(
        self, lr: float, momentum: float, schedule: Schedule, max_steps: int, batches: _Shuffler | None = None
    ) -> None:
        self.lr = lr
        self.momentum = momentum
        self.schedule = schedule
        self.max_steps = max_steps
        self.batches = batches

    def init(self, theta: torch.Tensor) -> torch.Tensor | None:
        return torch.zeros_like(theta) if self.momentum else None

    def step(
        self, theta: torch.Tensor, grad: torch.Tensor, velocity: torch.Tensor | None, t: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        rate = self.lr * self.schedule.factor(t, self.max_steps)
        if velocity is None:
            return theta - rate * grad, None

        velocity = self.momentum * velocity + grad
        return theta - rate * velocity, velocity

    def rows(self, t: int) -> torch.Tensor | None:
        return None if self.batches is None else self.batches.rows(t)


class _Adam:
    """Adam with bias correction, every model keeping its own moments."""

    def __init__(self, params: AdamParams, max_steps: int) -> None:
        self.params = params
        self.max_steps = max_steps

    def init(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros_like(theta), torch.zeros_like(theta)

    def step(
        self, theta: torch.Tensor, grad: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor], t: int
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        beta1, beta2 = self.params.betas
        first, second = moments
        first = beta1 * first + (1 - beta1) * grad
        second = beta2 * second + (1 - beta2) * grad.square()

        rate = self.params.lr * self.params.schedule.factor(t, self.max_steps)
        first_hat = first / (1 - beta1 ** (t + 1))
        second_hat = second / (1 - beta2 ** (t + 1))
        return theta - rate * first_hat / (second_hat.sqrt() + self.params.eps), (first, second)

    def rows(self, t: int) -> None:
        return None


def _gd(objective: Objective, theta: torch.Tensor, params: GDParams, stopping: Stopping) -> OptimResult:
    # the base rate is reported: lr * lambda_max compares the largest step with the curvature
    rule = _HeavyBall(params.lr, params.momentum, params.schedule, stopping.max_steps)
    return run_step_rule(objective, theta, rule, stopping, params.lr)


def _sgd(objective: Objective, theta: torch.Tensor, params: SGDParams, stopping: Stopping) -> OptimResult:
    num_samples = objective.num_samples
    batch_size = params.batch_size
    if batch_size > num_samples:
        log.warning(
            "sgd: batch_size %d exceeds the %d samples; every step uses all of them (lower batch_size to avoid this)",
            batch_size,
            num_samples,
        )
        batch_size = num_samples

    batches = _Shuffler(theta.shape[0], num_samples, batch_size, params.seed, theta.device)
    rule = _HeavyBall(params.lr, params.momentum, params.schedule, stopping.max_steps, batches)
    return run_step_rule(objective, theta, rule, stopping, params.lr)


def _adam(objective: Objective, theta: torch.Tensor, params: AdamParams, stopping: Stopping) -> OptimResult:
    # no single learning rate: Adam's step is not lr * gradient, so lr * lambda_max means nothing
    return run_step_rule(objective, theta, _Adam(params, stopping.max_steps), stopping, None)


# ---------------------------------------------------------------- per-model solvers in lockstep

#: a per-model solver: yields parameters to evaluate, is sent back ``(loss, gradient)``, returns its end point
_Evaluations = Generator[torch.Tensor, tuple[float, torch.Tensor], Any]


@dataclass
class _ModelRun:
    """One model's run under the stopping rules of ``run_step_rule``.

    ``losses[k]`` is the loss after ``k`` steps.  Per-model solvers read the
    loss on the host at every evaluation anyway, so tolerances are checked at
    every step instead of every ``check_every``: a model stops as soon as it may.
    """

    stopping: Stopping
    losses: list[float] = field(default_factory=list)
    diverged: bool = False
    met: bool = False

    @property
    def steps(self) -> int:
        return len(self.losses) - 1

    def should_stop(self, loss: float, grad: torch.Tensor) -> bool:
        """Record the loss after the latest step and say whether this model is done."""
        self.losses.append(loss)
        grad_norm = float(grad.norm())
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.diverged = True
            return True

        if loss <= self.stopping.loss_tol or grad_norm <= self.stopping.grad_tol:
            self.met = True
            return True
        return self.steps >= self.stopping.max_steps


class _ModelView:
    """Model ``b`` of a batch seen over its unpadded parameters, through the objective's own interface."""

    def __init__(self, objective: Objective, scratch: torch.Tensor, positions: torch.Tensor, index: int) -> None:
        self.objective = objective
        self.scratch = scratch
        self.positions = positions
        self.index = index

    def hessian(self, params: torch.Tensor) -> torch.Tensor:
        """Dense float64 Hessian at ``params``; over the leading parameters (``W``) only if ``a`` is frozen."""
        self.scratch[self.index, self.positions] = params
        return self.objective.hessian(self.scratch, self.index)


_Solver = Callable[[_ModelView, torch.Tensor, float, torch.Tensor, _ModelRun], _Evaluations]


def _lockstep(objective: Objective, theta: torch.Tensor, stopping: Stopping, solve: _Solver) -> OptimResult:
    """Run one ``solve`` per model, in float64, evaluating all their requests in one batched call per round.

    L-BFGS and Newton decide each step on the host (line searches,
    accept/reject) and need a different number of evaluations per model, so
    each model's logic is a plain Python generator; a loop over models
    advances them, while the objective is still evaluated once per round for
    the whole batch.  The result is float64 whatever the input dtype, because
    rounding back would undo the precision these methods are used for.
    """
    objective = objective.astype(torch.float64)
    theta = theta.to(torch.float64)
    net = objective.net
    index = torch.arange(net.num_params, device=theta.device).expand(net.num_models, -1)
    positions = [net.real_params(index, b) for b in range(net.num_models)]
    # rows of models with nothing to evaluate in a round: any finite point will do
    idle = torch.where(torch.isfinite(theta).all(dim=1, keepdim=True), theta, torch.zeros_like(theta))
    scratch = idle.clone()

    loss, grad = objective.loss_and_grad(theta)
    losses = loss.tolist()
    runs = [_ModelRun(stopping) for _ in range(net.num_models)]
    ends: dict[int, torch.Tensor] = {}
    pending: dict[int, tuple[_Evaluations, torch.Tensor]] = {}

    def advance(b: int, solver: _Evaluations, reply: tuple[float, torch.Tensor] | None) -> None:
        try:
            pending[b] = (solver, solver.send(reply))
        except StopIteration as finished:
            pending.pop(b, None)
            ends[b] = finished.value

    for b, pos in enumerate(positions):
        view = _ModelView(objective, scratch, pos, b)
        advance(b, solve(view, theta[b, pos], losses[b], grad[b, pos], runs[b]), None)
    while pending:
        trial = idle.clone()
        for b, (_, params) in pending.items():
            trial[b, positions[b]] = params
        loss, grad = objective.loss_and_grad(trial)
        losses = loss.tolist()
        for b, (solver, _) in list(pending.items()):
            advance(b, solver, (losses[b], grad[b, positions[b]]))

    end = theta.clone()
    for b, params in ends.items():
        end[b, positions[b]] = params
    return _lockstep_result(end, runs, stopping.check_every)


def _lockstep_result(theta: torch.Tensor, runs: list[_ModelRun], check_every: int) -> OptimResult:
    """The :class:`OptimResult` ``run_step_rule`` would give: a finished model keeps its last loss in the trace."""
    last = max(run.steps for run in runs)
    trace_steps = sorted(set(range(0, last + 1, check_every)) | {last})
    trace_loss = [[run.losses[min(t, run.steps)] for run in runs] for t in trace_steps]
    device = theta.device
    return OptimResult(
        theta=theta,
        steps=torch.tensor([run.steps for run in runs], device=device),
        diverged=torch.tensor([run.diverged for run in runs], device=device),
        met_tolerance=torch.tensor([run.met for run in runs], device=device),
        trace_steps=torch.tensor(trace_steps),
        trace_loss=torch.tensor(trace_loss, dtype=torch.float64, device=device),
        learning_rate=None,
    )


# ---------------------------------------------------------------- L-BFGS

#: sufficient-decrease and curvature constants of the Wolfe conditions
_C1, _C2 = 1e-4, 0.9
#: loss evaluations one line search may spend
_MAX_EVALS = 30

#: a trial point of a line search: (step, loss, slope along the direction, gradient)
_Trial = tuple[float, float, float, Any]
_Probe = Callable[[float], Generator[torch.Tensor, tuple[float, torch.Tensor], _Trial]]


def _probe(x: torch.Tensor, direction: torch.Tensor, step: float) -> Generator[torch.Tensor, Any, _Trial]:
    """Ask for the loss and gradient at ``x + step * direction``."""
    loss, grad = yield x + step * direction
    return step, loss, float(grad @ direction), grad


def _sufficient_decrease(trial: _Trial, loss0: float, slope0: float) -> bool:
    step, loss = trial[0], trial[1]
    return math.isfinite(loss) and loss <= loss0 + _C1 * step * slope0


def _interpolate(lo: _Trial, hi: _Trial) -> float:
    """The minimiser of the cubic matching both ends' losses and slopes, or the midpoint when it strays."""
    (a, fa, da, _), (b, fb, db, _) = lo, hi
    left, right = min(a, b), max(a, b)
    midpoint = 0.5 * (a + b)
    if not all(math.isfinite(v) for v in (fa, fb, da, db)):
        return midpoint

    d1 = da + db - 3 * (fa - fb) / (a - b)
    radicand = d1 * d1 - da * db
    if radicand < 0:
        return midpoint
    d2 = math.copysign(math.sqrt(radicand), b - a)
    denominator = db - da + 2 * d2
    if denominator == 0:
        return midpoint
    t = b - (b - a) * (db + d2 - d1) / denominator

    margin = 0.1 * (right - left)
    return t if left + margin <= t <= right - margin else midpoint


def _zoom(
    probe: _Probe, loss0: float, slope0: float, lo: _Trial, hi: _Trial, budget: int
) -> Generator[torch.Tensor, Any, _Trial | None]:
    """Narrow a bracket down to a strong-Wolfe step (Nocedal and Wright, Alg. 3.6).

    ``lo`` always satisfies sufficient decrease with the lowest loss seen, so
    when the budget runs out it is still an acceptable descent step.
    """
    for _ in range(budget):
        trial = yield from probe(_interpolate(lo, hi))
        if not _sufficient_decrease(trial, loss0, slope0) or trial[1] >= lo[1]:
            hi = trial
        else:
            if abs(trial[2]) <= -_C2 * slope0:
                return trial
            if trial[2] * (hi[0] - lo[0]) >= 0:
                hi = lo
            lo = trial
        if abs(hi[0] - lo[0]) <= 1e-12 * max(hi[0], lo[0]):
            break
    return lo if lo[0] > 0 else None


def _strong_wolfe(
    probe: _Probe, loss0: float, slope0: float, step: float
) -> Generator[torch.Tensor, Any, _Trial | None]:
    """A step with sufficient decrease and a small slope (Nocedal and Wright, Alg. 3.5)."""
    previous: _Trial = (0.0, loss0, slope0, None)
    for evals in range(_MAX_EVALS):
        trial = yield from probe(step)
        remaining = _MAX_EVALS - evals - 1
        if not _sufficient_decrease(trial, loss0, slope0) or (evals > 0 and trial[1] >= previous[1]):
            return (yield from _zoom(probe, loss0, slope0, previous, trial, remaining))
        if abs(trial[2]) <= -_C2 * slope0:
            return trial
        if trial[2] >= 0:
            return (yield from _zoom(probe, loss0, slope0, trial, previous, remaining))
        previous, step = trial, 4.0 * step
    return None


def _backtracking(
    probe: _Probe, loss0: float, slope0: float, step: float
) -> Generator[torch.Tensor, Any, _Trial | None]:
    """The first of ``step, step/2, ...`` with sufficient decrease (Armijo)."""
    for _ in range(_MAX_EVALS):
        trial = yield from probe(step)
        if _sufficient_decrease(trial, loss0, slope0):
            return trial
        step *= 0.5
    return None


_LINE_SEARCHES = {"strong_wolfe": _strong_wolfe, "backtracking": _backtracking}


def _two_loop(grad: torch.Tensor, pairs: deque[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The L-BFGS direction ``-H grad`` from the stored ``(s, y, 1 / s.y)`` (Nocedal and Wright, Alg. 7.4)."""
    q = grad.clone()
    alphas = []
    for s, y, rho in reversed(pairs):
        alpha = rho * (s @ q)
        q -= alpha * y
        alphas.append(alpha)

    if pairs:
        s, y, rho = pairs[-1]
        q *= 1.0 / (rho * (y @ y))
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        q += (alpha - rho * (y @ q)) * s
    return -q


def _lbfgs_model(
    view: _ModelView, x: torch.Tensor, loss: float, grad: torch.Tensor, run: _ModelRun, params: LBFGSParams
) -> _Evaluations:
    pairs: deque[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = deque(maxlen=params.history)
    search = _LINE_SEARCHES[params.line_search]

    while not run.should_stop(loss, grad):
        direction = _two_loop(grad, pairs)
        slope = float(grad @ direction)
        if not slope < 0:
            pairs.clear()
            direction, slope = -grad, -float(grad @ grad)

        # without history the direction is the raw gradient: start with a step of unit l1 length
        first = 1.0 if pairs else min(1.0, 1.0 / float(grad.abs().sum()))
        found = yield from search(partial(_probe, x, direction), loss, slope, first)
        if found is None and not pairs:
            log.debug("lbfgs: model %d finds no decrease along the gradient at loss %.3e; stopping", view.index, loss)
            break
        if found is None:
            pairs.clear()
            continue

        step, new_loss, _, new_grad = found
        s, y = step * direction, new_grad - grad
        curvature = s @ y
        if float(curvature) > 1e-10 * float(s.norm() * y.norm()):
            pairs.append((s, y, 1.0 / curvature))
        x, loss, grad = x + s, new_loss, new_grad
    return x


def _lbfgs(objective: Objective, theta: torch.Tensor, params: LBFGSParams, stopping: Stopping) -> OptimResult:
    return _lockstep(objective, theta, stopping, partial(_lbfgs_model, params=params))


# ---------------------------------------------------------------- damped Newton refiner

_DAMPING_FACTOR = 10.0
#: below this mu adds nothing to a float64 Hessian of order one
_MIN_DAMPING = 1e-12
#: above this the step is below float64 resolution: no step can help
_MAX_DAMPING = 1e12


def _damped_step(
    hessian: torch.Tensor, grad: torch.Tensor, damping: float, max_step: float
) -> tuple[torch.Tensor | None, float]:
    """``-(H + mu I)^{-1} g`` for the smallest ``mu = damping * 10^k`` whose step is at most ``max_step`` long."""
    identity = torch.eye(hessian.shape[0], dtype=hessian.dtype, device=hessian.device)
    while damping <= _MAX_DAMPING:
        step, info = torch.linalg.solve_ex(hessian + damping * identity, -grad)
        if int(info) == 0 and bool(torch.isfinite(step).all()) and float(step.norm()) <= max_step:
            return step, damping
        damping *= _DAMPING_FACTOR
    return None, damping


def _improves(loss: float, grad: torch.Tensor, than_loss: float, than_grad: torch.Tensor) -> bool:
    """A step is kept when it lowers the loss or the gradient norm, so saddles can be reached too."""
    grad_norm = float(grad.norm())
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        return False
    return loss < than_loss or grad_norm < float(than_grad.norm())


def _newton_model(
    view: _ModelView, start: torch.Tensor, loss: float, grad: torch.Tensor, run: _ModelRun, params: NewtonParams
) -> _Evaluations:
    """Damped Newton for one model; every trial counts as a step, rejected ones too.

    The Hessian may cover only the leading parameters (``W``, when an
    objective freezes ``a``); the others are left as they are.
    """
    x = start
    start_grad_norm = float(grad.norm())
    damping = params.damping
    hessian = None

    while not run.should_stop(loss, grad):
        if hessian is None:
            hessian = view.hessian(x)
        free = hessian.shape[0]
        step, damping = _damped_step(hessian, grad[:free], damping, params.max_step)
        if step is None:
            log.debug("newton: model %d finds no step at loss %.3e, |grad| %.3e", view.index, loss, float(grad.norm()))
            break

        trial = x.clone()
        trial[:free] += step
        distance = float((trial - start).norm())
        if distance > params.max_distance:
            log.warning(
                "newton: model %d would move %.3g from where training left it (max_distance %.3g); stopped "
                "at |grad| %.3e. Train longer, or raise max_distance if such a move is intended",
                view.index,
                distance,
                params.max_distance,
                float(grad.norm()),
            )
            break

        trial_loss, trial_grad = yield trial
        if _improves(trial_loss, trial_grad, loss, grad):
            x, loss, grad, hessian = trial, trial_loss, trial_grad, None
            damping = max(damping / _DAMPING_FACTOR, _MIN_DAMPING)
        else:
            damping *= _DAMPING_FACTOR

    log.debug(
        "newton: model %d moved %.3g in %d steps, |grad| %.3e -> %.3e",
        view.index,
        float((x - start).norm()),
        run.steps,
        start_grad_norm,
        float(grad.norm()),
    )
    return x


def _newton(objective: Objective, theta: torch.Tensor, params: NewtonParams, stopping: Stopping) -> OptimResult:
    return _lockstep(objective, theta, stopping, partial(_newton_model, params=params))


@hookimpl
def harness_optimizers() -> list[Optimizer]:
    return [
        Optimizer("gd", "full-batch gradient descent, optional heavy-ball momentum", _gd, params=GDParams),
        Optimizer("sgd", "mini-batch SGD, each model shuffled by its own seed", _sgd, params=SGDParams),
        Optimizer("adam", "Adam, every model with its own moments", _adam, params=AdamParams),
        Optimizer("lbfgs", "L-BFGS in float64, each model with its own line search", _lbfgs, params=LBFGSParams),
        Optimizer(
            "newton",
            "float64 damped Newton refiner: polishes each end point into its nearest critical point",
            _newton,
            params=NewtonParams,
        ),
    ]
