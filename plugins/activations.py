"""Built-in activations."""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field

from harness import Activation, hookimpl


class LeakyReluParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slope: float = Field(0.01, ge=0.0, description="slope for negative inputs")


class SoftplusParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    beta: float = Field(1.0, gt=0.0, description="sharpness; large beta approaches ReLU")


def _relu(z, params):
    return torch.relu(z)


def _leaky_relu(z, params):
    return torch.nn.functional.leaky_relu(z, params.slope)


def _softplus(z, params):
    return torch.nn.functional.softplus(z, beta=params.beta)


@hookimpl
def harness_activations() -> list[Activation]:
    return [
        Activation(
            "relu",
            "max(0, z); kink at 0",
            _relu,
            kappa=lambda p: 0.5,
            kinks=(0.0,),
        ),
        Activation(
            "leaky_relu",
            "max(slope*z, z); kink at 0",
            _leaky_relu,
            params=LeakyReluParams,
            kappa=lambda p: (1.0 + p.slope**2) / 2.0,
            kinks=(0.0,),
        ),
        Activation("tanh", "hyperbolic tangent", lambda z, p: torch.tanh(z)),
        Activation(
            "gelu",
            "z * Phi(z), the exact (erf) form",
            lambda z, p: torch.nn.functional.gelu(z),
        ),
        Activation("silu", "z * sigmoid(z), also called swish", lambda z, p: torch.nn.functional.silu(z)),
        Activation("sigmoid", "logistic 1 / (1 + exp(-z))", lambda z, p: torch.sigmoid(z)),
        Activation(
            "softplus",
            "log(1 + exp(beta z)) / beta",
            _softplus,
            params=SoftplusParams,
        ),
        Activation(
            "erf",
            "Gauss error function erf(z)",
            lambda z, p: torch.erf(z),
            kappa=lambda p: 4.0 / (math.pi * math.sqrt(5.0)),
        ),
    ]
