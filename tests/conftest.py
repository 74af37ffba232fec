"""Shared fixtures: a plugin registry and tiny specs that run in seconds."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from harness.registry import Registry
from harness.spec import Spec, parse_spec


# the models in tests are tiny: extra threads only spin
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry()


def tiny_spec_dict(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "tiny",
        "seeds": 2,
        "grid": {"n": [12], "delta": [0.5, 1.0], "gamma": [0.1, 0.5, 2.0]},
        "optimizers": [{"name": "gd", "params": {"lr": 0.5}}],
        "training": {"max_steps": 300, "check_every": 25},
        "analysis": {"bootstrap": 20},
        "tracking": {"enabled": False},
    }
    raw.update(overrides)
    return raw


@pytest.fixture
def tiny_spec() -> Spec:
    return parse_spec(tiny_spec_dict())
