"""Built-in data models."""

from __future__ import annotations

import numpy as np
import torch

from harness import DataModel, hookimpl


def _gaussian(n, d, generator, device, dtype, params):
    return torch.randn(n, d, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)


@hookimpl
def harness_data_models() -> list[DataModel]:
    return [
        DataModel(
            "gaussian",
            "isotropic Gaussian inputs, x ~ N(0, I_d)",
            _gaussian,
            population_spectrum=lambda d, params: np.ones(d),
        ),
    ]
