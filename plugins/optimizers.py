"""Built-in batched optimizers."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from harness import Optimizer, hookimpl
from harness.network import Objective
from harness.optim_loop import OptimResult, Stopping, run_step_rule


class GDParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(0.1, gt=0, description="learning rate")


class _GradientDescent:
    def __init__(self, lr: float) -> None:
        self.lr = lr

    def init(self, theta: torch.Tensor) -> Any:
        return None

    def step(self, theta, grad, state, t):
        return theta - self.lr * grad, state

    def rows(self, t: int) -> None:
        return None


def _gd(objective: Objective, theta: torch.Tensor, params: GDParams, stopping: Stopping) -> OptimResult:
    return run_step_rule(objective, theta, _GradientDescent(params.lr), stopping, params.lr)


@hookimpl
def harness_optimizers() -> list[Optimizer]:
    return [
        Optimizer("gd", "full-batch gradient descent", _gd, params=GDParams),
    ]
