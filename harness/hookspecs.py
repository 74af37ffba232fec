"""Hook specifications of the ``harness`` plugin project.

Plugin families each have one hook returning a list of plugin objects.
Lifecycle hooks let trackers, reporters and plot writers observe a run
without the runner knowing they exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from harness.events import BatchFinished, RunFinished, RunStarted
    from harness.plugin_types import (
        Activation,
        DataModel,
        Executor,
        Optimizer,
        Predictor,
    )

PROJECT = "harness"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- plugin families -----------------------------------------------------


@hookspec
def harness_activations() -> list[Activation]:
    """Return the activations this plugin provides."""


@hookspec
def harness_data_models() -> list[DataModel]:
    """Return the input distributions this plugin provides."""


@hookspec
def harness_optimizers() -> list[Optimizer]:
    """Return the batched optimizers this plugin provides."""


@hookspec
def harness_predictors() -> list[Predictor]:
    """Return the gamma* predictors this plugin provides."""


@hookspec
def harness_executors() -> list[Executor]:
    """Return the batch executors this plugin provides."""


# -- run lifecycle -------------------------------------------------------


@hookspec
def harness_run_started(event: RunStarted) -> None:
    """Called once the spec is validated and the result store is open."""


@hookspec
def harness_batch_finished(event: BatchFinished) -> None:
    """Called in the driver for every batch, computed now or resumed."""


@hookspec
def harness_run_finished(event: RunFinished) -> None:
    """Called after every batch is in the store and analysed."""
