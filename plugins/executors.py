"""Built-in executors."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from harness import Executor, hookimpl


def _local(tasks: Iterable[Any], run_batch: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
    """In-process, one batch after another; each batch is itself fully batched in torch."""
    for task in tasks:
        yield task, run_batch(task)


@hookimpl
def harness_executors() -> list[Executor]:
    return [Executor("local", "in-process, one batch after another", _local)]
