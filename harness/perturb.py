"""Perturb-and-retrain: the robust test of a local minimum on a kinked landscape.

At ReLU end points many samples sit on a neuron's kink, where the autograd
Hessian is only one-sided and can certify a point that is not a minimum.
Kicking the point in random directions and training again asks the
landscape directly: if the loss drops, the point was not a local minimum.
"""

from __future__ import annotations

import torch

from harness.optim_loop import Stopping
from harness.seeding import generator
from harness.spec import PerturbCheck


def perturbed_loss_drop(
    optimizer,
    opt_params,
    objective,
    theta: torch.Tensor,
    candidates: list[int],
    check: PerturbCheck,
    seed_key: tuple,
) -> torch.Tensor:
    """Per candidate, ``(L - min over trials of L_retrained) / L``; all trials train as one batch."""
    index = torch.tensor(candidates).repeat_interleave(check.trials)
    trials = objective.select(index)

    start = theta[index.to(theta.device)]
    noise = torch.randn(start.shape, generator=generator("perturb", *seed_key), dtype=torch.float64)
    noise = noise.to(start.device, start.dtype) * trials.net.param_mask().to(start.device)
    kicked = trials.prepare_initial(start + check.scale * noise)

    before = objective.loss(theta)[torch.tensor(candidates, device=theta.device)]
    stopping = Stopping(check.steps, 0.0, 0.0, check.steps)
    after = trials.loss(optimizer.minimize(trials, kicked, opt_params, stopping).theta)
    best = torch.nan_to_num(after, nan=float("inf")).view(len(candidates), check.trials).min(dim=1).values
    return ((before - best) / before.clamp_min(1e-300)).cpu().to(torch.float64)
