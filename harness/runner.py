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
from harness.spec import Spec
from harness.store import DEFAULT_ROOT, RunStore

log = logging.getLogger(__name__)


def check_plugins(spec: Spec, registry: Registry) -> None:
    """Fail before any training if a plugin name or its parameters are wrong."""
    refs = [("activation", r) for r in spec.activations]
    refs += [("data_model", r) for r in spec.data_models]
    refs += [("optimizer", r) for r in spec.optimizers]
    refs.append(("activation", spec.teacher.activation))
    if spec.refine is not None:
        refs.append(("optimizer", spec.refine.optimizer))
    for family, ref in refs:
        plugin = registry.get(family, ref.name)
        _validate_params(family, plugin, ref.params)


def _validate_params(family: str, plugin, params: dict) -> None:
    try:
        plugin.params.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(params)'}: {e['msg']}" for e in exc.errors()
        )
        raise HarnessError(f"{family} {plugin.name!r} params: {problems}") from exc


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
    done = store.done_ids()
    pending = [t for t in tasks if t.batch_id not in done]
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
    planned = {t.batch_id for t in tasks}
    finished = 0
    for previous in store.load_batches():
        if previous.batch_id in planned:
            finished += 1
            results[previous.batch_id] = previous
            hook.harness_batch_finished(event=BatchFinished(info, previous, fresh=False, done=finished))

    for task, (result, eigenvalues) in execute(pending, run_batch):
        store.write_batch(result, eigenvalues)
        finished += 1
        results[task.batch_id] = result
        hook.harness_batch_finished(event=BatchFinished(info, result, fresh=True, done=finished))

    ordered = [results[t.batch_id] for t in tasks]
    hook.harness_run_finished(event=RunFinished(info, ordered, time.perf_counter() - started))
    return store, ordered

