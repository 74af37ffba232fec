"""The shared training loop: per-model stopping and divergence detection.

An optimizer plugin usually supplies only a :class:`StepRule`;
:func:`run_step_rule` applies it to all models at once, freezes each model
as soon as it meets a tolerance or turns non-finite, and looks at the host
only every ``check_every`` steps so the device is never stalled per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from harness.network import Objective


@dataclass(frozen=True)
class Stopping:
    max_steps: int
    loss_tol: float
    grad_tol: float
    check_every: int = 50


@dataclass
class OptimResult:
    """Where each model ended and how it got there.

    ``trace_steps`` and ``trace_loss`` hold the full-batch loss at every
    check (shape ``(C,)`` and ``(C, B)``) so the caller can tell a converged
    run from one that was still descending when the budget ran out.
    """

    theta: torch.Tensor
    steps: torch.Tensor
    diverged: torch.Tensor
    met_tolerance: torch.Tensor
    trace_steps: torch.Tensor
    trace_loss: torch.Tensor
    learning_rate: float | None = None


class StepRule(Protocol):
    def init(self, theta: torch.Tensor) -> Any: ...

    def step(
        self, theta: torch.Tensor, grad: torch.Tensor, state: Any, t: int
    ) -> tuple[torch.Tensor, Any]: ...

    def rows(self, t: int) -> torch.Tensor | None:
        """Sample indices ``(B, k)`` for step ``t``, or ``None`` for the full batch."""
        ...


def run_step_rule(
    objective: Objective,
    theta: torch.Tensor,
    rule: StepRule,
    stopping: Stopping,
    learning_rate: float | None = None,
) -> OptimResult:
    theta = theta.clone()
    batch = theta.shape[0]
    device = theta.device
    active = torch.ones(batch, dtype=torch.bool, device=device)
    diverged = torch.zeros_like(active)
    met = torch.zeros_like(active)
    steps = torch.zeros(batch, dtype=torch.long, device=device)
    trace_steps: list[int] = []
    trace_loss: list[torch.Tensor] = []
    state = rule.init(theta)

    for t in range(stopping.max_steps + 1):
        rows = rule.rows(t)
        loss, grad = objective.loss_and_grad(theta, rows)

        if t % stopping.check_every == 0 or t == stopping.max_steps:
            if rows is not None:
                loss, full_grad = objective.loss_and_grad(theta)
            else:
                full_grad = grad
            finite = torch.isfinite(loss) & torch.isfinite(full_grad).all(dim=1)
            diverged |= active & ~finite
            reached = finite & ((loss <= stopping.loss_tol) | (full_grad.norm(dim=1) <= stopping.grad_tol))
            met |= active & reached
            active &= finite & ~reached
            trace_steps.append(t)
            trace_loss.append(loss)
            if t == stopping.max_steps or not bool(active.any()):
                break

        proposal, state = rule.step(theta, grad, state, t)
        theta = torch.where(active[:, None], proposal, theta)
        steps += active

    return OptimResult(
        theta=theta,
        steps=steps,
        diverged=diverged,
        met_tolerance=met,
        trace_steps=torch.tensor(trace_steps),
        trace_loss=torch.stack(trace_loss),
        learning_rate=learning_rate,
    )
