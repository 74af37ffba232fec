"""Inputs and teacher labels for one (data model, n, delta, seed).

Every gamma of a seed sees the same data set: nothing here depends on the
student.  Labels are scaled to unit variance (without centring, which would
make the teacher unrealisable by a bias-free student) so that loss
tolerances mean the same in every cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from harness.activation_math import BoundActivation
from harness.plugin_types import DataModel, DataSample
from harness.seeding import generator


@dataclass(frozen=True)
class Dataset:
    x: torch.Tensor
    y: torch.Tensor
    notes: dict[str, Any] = field(default_factory=dict)


def make_dataset(
    data_model: DataModel,
    data_params: Any,
    data_label: str,
    teacher_activation: BoundActivation,
    width: int,
    noise: float,
    n: int,
    d: int,
    seed: int,
) -> Dataset:
    """Draw inputs and labels in float64 on the CPU, from seeds of the cell key."""
    key = (data_label, n, d, seed)
    drawn = data_model.sample(n, d, generator("inputs", *key), "cpu", torch.float64, data_params)
    sample = drawn if isinstance(drawn, DataSample) else DataSample(drawn)
    x = sample.x.to(torch.float64)
    if x.shape != (n, d):
        raise ValueError(f"data model {data_model.name!r} returned shape {tuple(x.shape)}, expected {(n, d)}")

    if sample.labels is not None:
        y = sample.labels.to(torch.float64)
    else:
        gen = generator("teacher", *key)
        w = torch.randn(width, d, generator=gen, dtype=torch.float64) / d**0.5
        a = torch.randn(width, generator=gen, dtype=torch.float64)
        y = teacher_activation(x @ w.T) @ a / width**0.5

    std = y.std()
    if float(std) > 0:
        y = y / std
    if noise > 0:
        y = y + noise * torch.randn(n, generator=generator("noise", *key), dtype=torch.float64)
    return Dataset(x, y, dict(sample.notes))
