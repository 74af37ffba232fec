"""Mish, ``z * tanh(softplus(z))``, as a harness activation.

The harness differentiates the function by autograd, so a smooth activation
needs nothing more than its formula; ``harness kappa mish`` then checks its
``kappa = E[sigma'(z)^2]`` by two independent quadratures.
"""

from __future__ import annotations

import torch

from harness import Activation, hookimpl


def mish(z: torch.Tensor, params) -> torch.Tensor:
    return z * torch.tanh(torch.nn.functional.softplus(z))


@hookimpl
def harness_activations() -> list[Activation]:
    return [Activation("mish", "z * tanh(softplus(z)), smooth and non-monotone", mish)]
