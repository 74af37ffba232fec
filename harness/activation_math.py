"""Derivatives of an activation, bound to its parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.plugin_types import Activation


@dataclass(frozen=True)
class BoundActivation:
    """An activation with validated parameters, and its first two derivatives.

    Derivatives come from autograd unless the plugin gives the first one.
    At a kink autograd returns one one-sided value and a zero second
    derivative: the Hessian built from them is the one-sided Hessian, which is
    why end points also record how many samples sit near a kink.
    """

    plugin: Activation
    params: Any

    @property
    def name(self) -> str:
        return self.plugin.name

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.plugin.function(z, self.params)

    def first(self, z: torch.Tensor) -> torch.Tensor:
        if self.plugin.derivative is not None:
            return self.plugin.derivative(z, self.params)
        return self.derivatives(z)[1]

    def derivatives(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``sigma(z), sigma'(z), sigma''(z)`` elementwise."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            value = self(z)
            if self.plugin.derivative is not None:
                first = self.plugin.derivative(z, self.params)
            else:
                (first,) = torch.autograd.grad(value.sum(), z, create_graph=True)
            if first.requires_grad:
                (second,) = torch.autograd.grad(first.sum(), z, allow_unused=True)
            else:
                second = None
        if second is None:
            second = torch.zeros_like(z)
        return value.detach(), first.detach(), second.detach()

    def near_kink(self, z: torch.Tensor, tol: float) -> torch.Tensor:
        """Boolean mask of pre-activations within ``tol`` of a kink."""
        mask = torch.zeros_like(z, dtype=torch.bool)
        for kink in self.plugin.kinks:
            mask |= (z - kink).abs() <= tol
        return mask


def bind(plugin: Activation, params: dict[str, Any] | None = None) -> BoundActivation:
    return BoundActivation(plugin, plugin.params.model_validate(params or {}))
