"""Typed payloads of the run lifecycle hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.results import BatchResult
from harness.spec import Spec


@dataclass(frozen=True)
class RunInfo:
    """What observers need to know about the run in progress."""

    spec: Spec
    run_id: str
    store_path: Path
    tracking_uri: str | None
    executor: str
    planned_batches: int
    resumed_batches: int
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunStarted:
    run: RunInfo


@dataclass(frozen=True)
class BatchFinished:
    """A batch is in the store; ``fresh`` is False when it was resumed from an earlier run."""

    run: RunInfo
    result: BatchResult
    fresh: bool
    done: int


@dataclass(frozen=True)
class RunFinished:
    run: RunInfo
    results: list[BatchResult]
    elapsed_s: float
