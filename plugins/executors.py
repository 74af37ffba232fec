"""Built-in executors: ``local`` (in-process) and ``ray`` (one Ray task per batch).

Both yield ``(task, result)`` pairs in the driver, so only the driver writes
the result store and the MLflow mirror, whichever executor computed a batch.

On a Ray cluster with GPUs every batch holds one GPU, and Ray makes exactly
that GPU visible to the worker.  The spec's ``training.device`` still decides
where a batch trains: ``auto`` picks the task's GPU, ``cuda`` does too, and
``cpu`` (the default) leaves the GPU idle.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from harness import Executor, HarnessError, hookimpl

log = logging.getLogger(__name__)

RAY_MISSING = "the ray executor needs ray: pip install 'landscape-harness[ray]'"

#: Ray on Linux listens on the machine's network address unless told that the
#: instance is a single machine; a private instance only serves this driver
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _local(tasks: Iterable[Any], run_batch: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
    """In-process, one batch after another; each batch is itself fully batched in torch."""
    for task in tasks:
        yield task, run_batch(task)


def _import_ray() -> Any:
    """Import ray on first use, so that the harness runs without it."""
    if not os.environ.get("RAY_ADDRESS") and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
    try:
        import ray
    except ImportError as exc:
        raise HarnessError(RAY_MISSING) from exc
    return ray


def _ensure_ray(ray: Any) -> bool:
    """Use a running Ray, the cluster at ``RAY_ADDRESS``, or a new local instance.

    Returns whether this call initialised Ray, and so must shut it down:
    a Ray the caller started stays up for the caller.
    """
    if ray.is_initialized():
        log.info("using the Ray instance already running in this process")
        return False

    address = os.environ.get("RAY_ADDRESS")
    if not address:
        log.info("starting a local Ray instance")
        ray.init(address="local", include_dashboard=False)
        return True

    log.info("connecting to the Ray cluster at %s (RAY_ADDRESS)", address)
    try:
        ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise HarnessError(
            f"cannot connect to the Ray cluster at RAY_ADDRESS={address}: {exc}; "
            "check the address, or unset RAY_ADDRESS to run on a local Ray instance"
        ) from exc
    return True


def task_resources(cluster: dict[str, float]) -> dict[str, float]:
    """One GPU per batch where the cluster has GPUs (one batch fills a GPU), else one CPU."""
    return {"num_cpus": 1, "num_gpus": 1 if cluster.get("GPU", 0) > 0 else 0}


def _warn_idle_gpus(resources: dict[str, float], tasks: list[Any]) -> None:
    if resources["num_gpus"] and any(t.spec.training.device == "cpu" for t in tasks):
        log.warning(
            "the Ray cluster has GPUs and every batch holds one, but training.device is 'cpu'; "
            "set training.device: auto to train on them"
        )


def _failure(exc: Exception) -> str:
    """The batch's own exception where Ray kept it, else Ray's."""
    cause = getattr(exc, "cause", None) or exc
    return str(cause) if isinstance(cause, HarnessError) else f"{type(cause).__name__}: {cause}"


def _ray(tasks: Iterable[Any], run_batch: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
    """One Ray task per batch; results come back to the driver in the order they finish."""
    ray = _import_ray()
    tasks = list(tasks)
    if not tasks:
        return

    started_here = _ensure_ray(ray)
    pending: dict[Any, Any] = {}
    try:
        resources = task_resources(ray.cluster_resources())
        _warn_idle_gpus(resources, tasks)
        remote_batch = ray.remote(run_batch)
        for task in tasks:
            pending[remote_batch.options(name=task.batch_id, **resources).remote(task)] = task
        log.info("submitted %d batch(es) to Ray, %s each", len(tasks),
                 "one GPU" if resources["num_gpus"] else "one CPU")

        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise HarnessError(f"batch {task.batch_id} failed on a Ray worker: {_failure(exc)}") from exc
            yield task, result
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started_here:
            ray.shutdown()


@hookimpl
def harness_executors() -> list[Executor]:
    return [
        Executor("local", "in-process, one batch after another", _local),
        Executor("ray", "one Ray task per batch, a GPU each where the cluster has GPUs", _ray),
    ]
