"""Terminal reporter: progress while a run goes, a summary table at the end."""

from __future__ import annotations

import sys

from harness import hookimpl
from harness.events import BatchFinished, RunFinished, RunStarted
from harness.summary import run_summary, transition_text


@hookimpl
def harness_run_started(event: RunStarted) -> None:
    run = event.run
    resumed = f", {run.resumed_batches} already done (resuming)" if run.resumed_batches else ""
    print(
        f"run {run.run_id}: {run.planned_batches} batch(es){resumed}; results in {run.store_path}",
        file=sys.stderr,
    )


@hookimpl
def harness_batch_finished(event: BatchFinished) -> None:
    if not event.fresh:
        return
    r = event.result
    print(
        f"[{event.done}/{event.run.planned_batches}] {r.activation} {r.data_model} {r.optimizer} "
        f"n={r.n} delta={r.delta:g}: {transition_text(r)} ({r.elapsed_s:.1f}s)",
        file=sys.stderr,
    )


@hookimpl
def harness_run_finished(event: RunFinished) -> None:
    print(run_summary(event.results))
    print(f"\nfinished in {event.elapsed_s:.1f}s; results in {event.run.store_path}")
