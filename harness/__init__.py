"""landscape-harness: test loss-landscape claims about two-layer networks."""

from harness.errors import HarnessError
from harness.hookspecs import hookimpl
from harness.plugin_types import (
    Activation,
    DataModel,
    DataSample,
    Executor,
    NoParams,
    Optimizer,
    Prediction,
    PredictionContext,
    Predictor,
)

__all__ = [
    "Activation",
    "DataModel",
    "DataSample",
    "Executor",
    "HarnessError",
    "NoParams",
    "Optimizer",
    "Prediction",
    "PredictionContext",
    "Predictor",
    "hookimpl",
]
