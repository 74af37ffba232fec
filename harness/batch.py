"""One batch: every gamma x seed of one (activation, data model, optimizer, n, delta).

:func:`run_batch` is self-contained and picklable-in, picklable-out, so any
executor (in-process, Ray) can run it; only the driver writes the store.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass

import numpy as np
import torch

from harness.activation_math import bind
from harness.analysis import estimate_transition, success_curve
from harness.dataset import make_dataset
from harness.endpoints import (
    NOT_MEASURED,
    classify,
    eigenvalue_tolerance,
    measure_spectrum,
    relative_loss_decrease,
)
from harness.errors import HarnessError
from harness.kappa import compute_kappa
from harness.network import Objective, TwoLayerBatch
from harness.optim_loop import OptimResult, Stopping
from harness.perturb import perturbed_loss_drop
from harness.plugin_types import PredictionContext
from harness.registry import Registry
from harness.results import BatchResult, EndPoint, PredictionRecord
from harness.seeding import generator, stable_seed
from harness.spec import PluginRef, Spec

log = logging.getLogger(__name__)

#: gradient tolerance the float64 refinement aims for
REFINE_GRAD_TOL = 1e-12


@dataclass(frozen=True)
class BatchTask:
    spec: Spec
    activation: PluginRef
    data_model: PluginRef
    optimizer: PluginRef
    n: int
    delta: float

    @property
    def d(self) -> int:
        return max(1, round(self.delta * self.n))

    @property
    def batch_id(self) -> str:
        key = f"{self.activation.label}|{self.data_model.label}|{self.optimizer.label}|{self.n}|{self.delta!r}"
        readable = f"{self.activation.label}__{self.data_model.label}__{self.optimizer.label}__n{self.n}__delta{self.delta:g}"
        readable = re.sub(r"[^A-Za-z0-9_.=-]+", "-", readable)
        return f"{readable}__{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def plan(spec: Spec) -> list[BatchTask]:
    return [BatchTask(spec, act, data, opt, n, delta) for act, data, opt, n, delta in spec.combinations()]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError(f"training.device is {name!r} but no CUDA GPU is visible; use device: cpu or auto")
    return device


def _initial_theta(net: TwoLayerBatch, task: BatchTask, models: list[tuple[float, int, int]]) -> torch.Tensor:
    """``w ~ N(0, I/d)``, ``a ~ N(0, 1)``, seeded by (data, n, d, width, seed) only.

    Every activation and optimizer of a cell then starts from the same point.
    """
    w = torch.zeros(net.num_models, net.max_width, task.d, dtype=torch.float64)
    a = torch.zeros(net.num_models, net.max_width, dtype=torch.float64)
    for b, (_, width, seed) in enumerate(models):
        gen = generator("init", task.data_model.label, task.n, task.d, width, seed)
        w[b, :width] = torch.randn(width, task.d, generator=gen, dtype=torch.float64) / math.sqrt(task.d)
        a[b, :width] = torch.randn(width, generator=gen, dtype=torch.float64)
    return net.join(w, a)


def run_batch(task: BatchTask, registry: Registry | None = None) -> tuple[BatchResult, dict[str, np.ndarray]]:
    """Train, refine, measure and classify every model of one batch."""
    started = time.perf_counter()
    registry = registry or Registry()
    spec = task.spec
    device = resolve_device(spec.training.device)
    dtype = getattr(torch, spec.training.dtype)

    activation = bind(registry.get("activation", task.activation.name), task.activation.params)
    teacher_act = bind(registry.get("activation", spec.teacher.activation.name), spec.teacher.activation.params)
    data_plugin = registry.get("data_model", task.data_model.name)
    data_params = data_plugin.params.model_validate(task.data_model.params)
    optimizer = registry.get("optimizer", task.optimizer.name)
    opt_params = optimizer.params.model_validate(task.optimizer.params)

    # data and teacher depend on (data model, n, d, seed) only: every gamma shares them
    seeds = spec.seed_list()
    teacher_width = spec.teacher.width_at(task.n)
    datasets = {
        s: make_dataset(
            data_plugin, data_params, task.data_model.label, teacher_act,
            teacher_width, spec.teacher.noise, task.n, task.d, s,
        )
        for s in seeds
    }
    models = [(w / task.n, w, s) for w in spec.grid.widths(task.n, teacher_width) for s in seeds]

    net = TwoLayerBatch(torch.tensor([w for _, w, _ in models]), task.d, activation)
    x = torch.stack([datasets[s].x for _, _, s in models])
    y = torch.stack([datasets[s].y for _, _, s in models])
    theta0 = _initial_theta(net, task, models)

    if data_plugin.objective is not None:
        base = data_plugin.objective(net, models, teacher_width, task.d, data_params, teacher_act.name)
    else:
        base = Objective(net, x, y)
    objective = base.to(device, dtype)
    theta0 = base.prepare_initial(theta0)
    stopping = Stopping(
        spec.training.max_steps, spec.classify.loss_tol, spec.classify.grad_tol, spec.training.check_every
    )
    trained = optimizer.minimize(objective, theta0.to(device, dtype), opt_params, stopping)

    # refine and measure on the float64 data, never on its float32 rounding
    theta = trained.theta.to(torch.float64)
    refined = torch.zeros(len(models), dtype=torch.bool)
    if spec.refine is not None:
        theta, refined = _refine(registry, spec, base.to(device, torch.float64), theta, trained)
    theta = theta.cpu()
    objective64 = base.to("cpu", torch.float64)

    endpoints, eigenvalues = _measure(spec, objective64, theta, trained, refined.cpu(), models, task.n)
    if spec.perturb_check is not None:
        _check_by_perturbation(spec, optimizer, opt_params, objective, theta.to(device, dtype), endpoints, task)
    kappa = compute_kappa(activation)
    predictions = _predict(registry, task, data_plugin, data_params, kappa.value)
    transition = estimate_transition(
        endpoints, spec.analysis.bootstrap, spec.analysis.confidence, stable_seed("bootstrap", task.batch_id)
    )
    notes = {k: v for ds in datasets.values() for k, v in ds.notes.items()}
    result = BatchResult(
        batch_id=task.batch_id,
        activation=task.activation.label,
        data_model=task.data_model.label,
        optimizer=task.optimizer.label,
        n=task.n,
        delta=task.delta,
        d=task.d,
        teacher_width=teacher_width,
        kappa=kappa.quadrature,
        kappa_check=kappa.adaptive,
        predictions=predictions,
        endpoints=endpoints,
        curve=success_curve(endpoints),
        transition=transition,
        elapsed_s=time.perf_counter() - started,
        device=str(device),
        data_notes=notes,
    )
    return result, eigenvalues


def _refine(
    registry: Registry, spec: Spec, objective64: Objective, theta: torch.Tensor, trained: OptimResult
) -> tuple[torch.Tensor, torch.Tensor]:
    """Polish finite end points to a critical point in float64; diverged ones stay as they are.

    Returns the new parameters and, per model, whether the refiner reached its gradient tolerance.
    """
    refiner = registry.get("optimizer", spec.refine.optimizer.name)
    params = refiner.params.model_validate(spec.refine.optimizer.params)
    finite = torch.isfinite(theta).all(dim=1) & ~trained.diverged.to(theta.device)
    start = torch.where(finite[:, None], theta, torch.zeros_like(theta))
    stopping = Stopping(spec.refine.max_steps, 0.0, REFINE_GRAD_TOL, 1)
    refined = refiner.minimize(objective64, start, params, stopping)
    reached = finite & refined.met_tolerance.to(finite.device) & ~refined.diverged.to(finite.device)
    return torch.where(finite[:, None], refined.theta, theta), reached


def _measure(
    spec: Spec,
    objective: Objective,
    theta: torch.Tensor,
    trained: OptimResult,
    refined: torch.Tensor,
    models: list[tuple[float, int, int]],
    n: int,
) -> tuple[list[EndPoint], dict[str, np.ndarray]]:
    tol = spec.classify
    loss, grad = objective.loss_and_grad(theta)
    grad_norm = grad.norm(dim=1)
    initial_loss = trained.trace_loss[0].cpu().double().tolist()
    rel_decrease = relative_loss_decrease(trained.trace_steps, trained.trace_loss.cpu().double(), trained.steps.cpu())

    endpoints, eigenvalues = [], {}
    for b, (gamma, width, seed) in enumerate(models):
        finite = bool(torch.isfinite(theta[b]).all()) and math.isfinite(float(loss[b]))
        g = float(grad_norm[b]) if finite else math.nan
        eig_tol = eigenvalue_tolerance(g, tol) if finite else math.nan
        if finite:
            curvature = objective.curvature(theta, b)
            spectrum = measure_spectrum(curvature, eig_tol, spec.spectrum.dense_limit)
            kinks = curvature.near_kink_samples(tol.kink_tol)
        else:
            spectrum, kinks = NOT_MEASURED, 0
        if spectrum.eigenvalues is not None:
            eigenvalues[f"{b}"] = spectrum.eigenvalues

        lr = trained.learning_rate
        endpoints.append(
            EndPoint(
                gamma=gamma,
                width=width,
                seed=seed,
                state=classify(float(loss[b]), g, spectrum.lambda_min, eig_tol, tol, initial_loss[b]),
                loss=float(loss[b]),
                grad_norm=g,
                steps=int(trained.steps[b]),
                met_tolerance=bool(trained.met_tolerance[b]),
                rel_loss_decrease=float(rel_decrease[b]),
                lr_lambda_max=lr * spectrum.lambda_max if lr is not None else math.nan,
                lambda_min=spectrum.lambda_min,
                lambda_max=spectrum.lambda_max,
                index=spectrum.index,
                nullity=spectrum.nullity,
                min_abs_nonzero=spectrum.min_abs_nonzero,
                gram_lambda_min=spectrum.gram_lambda_min,
                eig_tol_used=eig_tol,
                near_kink_samples=kinks,
                hessian_method=spectrum.method,
                refined=bool(refined[b]),
            )
        )
    return endpoints, eigenvalues


def _check_by_perturbation(spec, optimizer, opt_params, objective, theta, endpoints, task) -> None:
    """Kick every spurious or stuck end point and retrain; record how far its loss drops."""
    candidates = [b for b, e in enumerate(endpoints) if e.state in ("spurious_min", "unconverged")]
    if not candidates:
        return
    drops = perturbed_loss_drop(
        optimizer, opt_params, objective, theta, candidates, spec.perturb_check, ("perturb", task.batch_id)
    )
    for b, drop in zip(candidates, drops.tolist()):
        endpoints[b].perturb_loss_drop = drop
        endpoints[b].perturb_escaped = drop > spec.perturb_check.min_drop


def _predict(registry: Registry, task: BatchTask, data_plugin, data_params, kappa: float) -> dict[str, PredictionRecord]:
    spectrum = None
    if data_plugin.population_spectrum is not None:
        spectrum = data_plugin.population_spectrum(task.d, data_params)
    ctx = PredictionContext(
        delta=task.d / task.n,
        n=task.n,
        d=task.d,
        kappa=kappa,
        activation=task.activation.name,
        gamma_teacher=task.spec.teacher.width_at(task.n) / task.n,
        spectrum=None if spectrum is None else np.asarray(spectrum, dtype=float),
    )
    out = {}
    for predictor in registry.all("predictor"):
        try:
            p = predictor.predict(ctx)
        except Exception as exc:  # one broken predictor must not lose the batch's measurements
            log.warning("predictor %s failed: %s", predictor.name, exc)
            out[predictor.name] = PredictionRecord(None, f"failed: {exc}", predictor.source)
            continue
        value = p.value if p.applicable else None
        out[predictor.name] = PredictionRecord(value, p.reason, predictor.source)
    return out
