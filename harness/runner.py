"""The driver: plan batches, skip finished ones, execute the rest, store, notify."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pydantic import ValidationError

from harness.batch import plan, run_batch
from harness.errors import HarnessError
from harness.events import BatchFinished, RunFinished, RunInfo, RunStarted
from harness.registry import Registry
from harness.results import BatchResult
from harness.spec import Spec, SpecError
from harness.store import DEFAULT_ROOT, RunStore

log = logging.getLogger(__name__)


def check_plugins(spec: Spec, registry: Registry) -> None:
    """Fail before any training if a plugin name or its parameters are wrong."""
    refs = [(f"activations.{i}", "activation", r) for i, r in enumerate(spec.activations)]
    refs += [(f"data_models.{i}", "data_model", r) for i, r in enumerate(spec.data_models)]
    refs += [(f"optimizers.{i}", "optimizer", r) for i, r in enumerate(spec.optimizers)]
    refs.append(("teacher.activation", "activation", spec.teacher.activation))
    if spec.refine is not None:
        refs.append(("refine.optimizer", "optimizer", spec.refine.optimizer))
    problems = []
    for where, family, ref in refs:
        try:
            plugin = registry.get(family, ref.name)
            plugin.params.model_validate(ref.params)
        except HarnessError as exc:
            problems.append(f"  {where}: {exc}")
        except ValidationError as exc:
            for e in exc.errors():
                field = ".".join(str(p) for p in e["loc"])
                problems.append(f"  {where}.params{'.' + field if field else ''}: {e['msg']}")
    if problems:
        raise SpecError("\n".join([f"{len(problems)} problem(s) with the spec's plugins:", *problems]))


def run_spec(
    spec: Spec,
    registry: Registry | None = None,
    executor: str = "local",
    tracking_uri: str | None = None,
    results_root: Path = DEFAULT_ROOT,
) -> tuple[RunStore, list[BatchResult]]:
    """Run every batch of ``spec`` not already in its store; return the store and all results."""
    started = time.perf_counter()
    registry = registry or Registry()
    check_plugins(spec, registry)
    execute = registry.get("executor", executor).execute

    store = RunStore.open(spec, results_root)
    tasks = plan(spec)
    stored = {r.batch_id: r for r in store.load_batches()}  # unreadable records are recomputed
    pending = [t for t in tasks if t.batch_id not in stored]
    info = RunInfo(
        spec=spec,
        run_id=store.run_id,
        store_path=store.path,
        tracking_uri=tracking_uri,
        executor=executor,
        planned_batches=len(tasks),
        resumed_batches=len(tasks) - len(pending),
    )
    hook = registry.pm.hook
    hook.harness_run_started(event=RunStarted(info))

    results: dict[str, BatchResult] = {}
    finished = 0
    for task in tasks:
        previous = stored.get(task.batch_id)
        if previous is not None:
            finished += 1
            results[task.batch_id] = previous
            hook.harness_batch_finished(event=BatchFinished(info, previous, fresh=False, done=finished))

    for task, (result, eigenvalues) in execute(pending, run_batch):
        store.write_batch(result, eigenvalues)
        finished += 1
        results[task.batch_id] = result
        hook.harness_batch_finished(event=BatchFinished(info, result, fresh=True, done=finished))

    ordered = [results[t.batch_id] for t in tasks]
    hook.harness_run_finished(event=RunFinished(info, ordered, time.perf_counter() - started))
    return store, ordered

