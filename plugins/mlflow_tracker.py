"""Mirror a run into MLflow: a parent run per ``harness run``, a child per batch.

The local store stays the source of truth.  On resume the same parent run
is reopened and only the batches without a child run are logged, so the
mirror can always be completed from the store.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import subprocess
import sys
import time
import urllib.error
import urllib.request

from harness import hookimpl
from harness.errors import HarnessError
from harness.events import BatchFinished, RunFinished, RunInfo, RunStarted
from harness.results import STATES, BatchResult
from harness.store import RunStore

log = logging.getLogger(__name__)

BATCH_TAG = "harness.batch_id"
PARENT_TAG = "mlflow.parentRunId"
_PACKAGES = ("landscape-harness", "torch", "numpy", "scipy", "mlflow", "pluggy", "pydantic")


class MlflowTracker:
    """State of one run's mirror; created at run start, dropped at run end."""

    def __init__(self, info: RunInfo) -> None:
        # imported here: mlflow takes seconds to import, and every CLI command loads this module
        import mlflow
        from mlflow.tracking import MlflowClient

        self.info = info
        self.uri = info.tracking_uri or mlflow.get_tracking_uri()
        _check_reachable(self.uri)
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            self.client.search_experiments(max_results=1)
        except Exception as exc:
            raise HarnessError(
                f"MLflow cannot use the tracking URI {self.uri!r}: {str(exc).splitlines()[0]}; "
                "use e.g. sqlite:///mlflow.db or http://host:port, or --no-tracking"
            ) from exc
        self.experiment_id = self._experiment(info.spec.tracking.experiment or info.spec.name)
        self.parent_id = self._parent_run()
        self.logged = self._logged_batches()

    def _experiment(self, name: str) -> str:
        try:
            found = self.client.get_experiment_by_name(name)
            return found.experiment_id if found else self.client.create_experiment(name)
        except Exception as exc:
            raise HarnessError(
                f"MLflow at {self.uri} refused the experiment {name!r}: {exc}; "
                "check --tracking-uri or use --no-tracking"
            ) from exc

    def _parent_run(self) -> str:
        store = RunStore(self.info.store_path)
        known = store.meta().get("mlflow_runs", {})
        run_id = known.get(self.uri)
        if run_id is not None:
            try:
                self.client.get_run(run_id)
                self.client.update_run(run_id, status="RUNNING")
                return run_id
            except Exception:
                log.info("MLflow run %s is gone; starting a new parent run", run_id)

        run = self.client.create_run(self.experiment_id, run_name=self.info.run_id, tags=self._parent_tags())
        run_id = run.info.run_id
        store.update_meta(mlflow_runs=known | {self.uri: run_id})
        self.client.log_artifact(run_id, str(self.info.store_path / "spec.yaml"))
        return run_id

    def _parent_tags(self) -> dict[str, str]:
        spec = self.info.spec
        tags = {
            "harness.spec_hash": spec.digest(),
            "harness.spec_name": spec.name,
            "harness.run_id": self.info.run_id,
            "harness.git_commit": _git_commit(),
            "harness.device": spec.training.device,
            "harness.executor": self.info.executor,
            "harness.store": str(self.info.store_path),
        }
        for package in _PACKAGES:
            try:
                tags[f"version.{package}"] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                continue
        return tags

    def _logged_batches(self) -> set[str]:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.{PARENT_TAG} = '{self.parent_id}'", max_results=10000
        )
        return {r.data.tags.get(BATCH_TAG) for r in runs}

    def log_batch(self, result: BatchResult) -> None:
        from mlflow.entities import Metric, Param

        if result.batch_id in self.logged:
            return
        name = f"{result.activation}|{result.data_model}|{result.optimizer}|n={result.n}|delta={result.delta:g}"
        tags = {PARENT_TAG: self.parent_id, BATCH_TAG: result.batch_id}
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

        now = int(time.time() * 1000)
        params = {
            "activation": result.activation,
            "data_model": result.data_model,
            "optimizer": result.optimizer,
            "n": result.n,
            "delta": result.delta,
            "d": result.d,
            "teacher_width": result.teacher_width,
            "device": result.device,
        }
        metrics = _batch_metrics(result)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, step) for k, v, step in metrics],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        self.client.log_table(run_id, _curve_table(result), "success_curve.json")
        self.client.log_table(run_id, _endpoint_table(result), "endpoints.json")
        self.client.set_terminated(run_id)
        self.logged.add(result.batch_id)

    def finish(self, results: list[BatchResult], elapsed_s: float) -> None:
        from mlflow.entities import Metric

        artifacts = self.info.store_path / "artifacts"
        if artifacts.is_dir():
            self.client.log_artifacts(self.parent_id, str(artifacts))
        now = int(time.time() * 1000)
        self.client.log_batch(self.parent_id, metrics=[Metric("wall_time_s", elapsed_s, now, 0)])
        self.client.set_terminated(self.parent_id)
        print(
            f"MLflow: experiment {self.info.spec.tracking.experiment or self.info.spec.name!r}, "
            f"run {self.parent_id}; browse with: mlflow ui --backend-store-uri {self.uri}",
            file=sys.stderr,
        )


def _batch_metrics(result: BatchResult) -> list[tuple[str, float, int]]:
    t = result.transition
    metrics = [("kappa", result.kappa, 0), ("unconverged_fraction", result.unconverged_fraction, 0)]
    for name, rec in result.predictions.items():
        if rec.value is not None and math.isfinite(rec.value):
            metrics.append((f"gamma_star.{name}", rec.value, 0))
    for key, value in (
        ("gamma_hat", t.gamma_hat),
        ("gamma_hat_ci_low", t.ci_low),
        ("gamma_hat_ci_high", t.ci_high),
        ("transition_width", t.width),
    ):
        if value is not None:
            metrics.append((key, value, 0))

    # the curve as step-indexed series: chart success_rate against gamma in the UI
    for step, point in enumerate(result.curve):
        metrics.append(("gamma", point.gamma, step))
        metrics.append(("success_rate", point.success_rate, step))
        for state in STATES:
            metrics.append((f"fraction.{state}", point.counts.get(state, 0) / point.runs, step))
    total = sum(p.runs for p in result.curve)
    metrics.append(("success_rate_overall", sum(p.successes for p in result.curve) / max(total, 1), 0))
    return metrics


def _curve_table(result: BatchResult) -> dict[str, list]:
    return {
        "gamma": [p.gamma for p in result.curve],
        "width": [p.width for p in result.curve],
        "runs": [p.runs for p in result.curve],
        "success_rate": [p.success_rate for p in result.curve],
        **{state: [p.counts.get(state, 0) for p in result.curve] for state in STATES},
    }


def _endpoint_table(result: BatchResult) -> dict[str, list]:
    rows = [json.loads(json.dumps(e.__dict__, default=str)) for e in result.endpoints]
    return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _check_reachable(uri: str) -> None:
    """Fail in seconds, before any training, when a tracking server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5):
            pass
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HarnessError(
            f"MLflow tracking server {uri} is not reachable ({reason}); "
            "start it, point --tracking-uri elsewhere, or use --no-tracking"
        ) from exc


_active: dict[str, MlflowTracker] = {}


@hookimpl
def harness_run_started(event: RunStarted) -> None:
    if event.run.spec.tracking.enabled:
        _active[event.run.run_id] = MlflowTracker(event.run)


@hookimpl
def harness_batch_finished(event: BatchFinished) -> None:
    tracker = _active.get(event.run.run_id)
    if tracker is not None:
        tracker.log_batch(event.result)


@hookimpl(trylast=True)
def harness_run_finished(event: RunFinished) -> None:
    tracker = _active.pop(event.run.run_id, None)
    if tracker is not None:
        tracker.finish(event.results, event.elapsed_s)
