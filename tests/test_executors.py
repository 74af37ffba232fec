"""The ray executor gives the local executor's results, resumes like it, and fails clearly.

Both executors run the same code on CPU from the same seeds.  A one-CPU Ray
worker runs torch on one thread, so the local reference run here does too;
then every number is bitwise the same (measured).  The tolerance below still
allows for a driver on several threads, where threaded float64 reductions
change the last bits: measured worst cases there were 1.4e-28 absolute on
losses at global minima, 1.9e-17 on gradient norms at polished critical
points and 1.8e-15 (7.8e-16 relative) on eigenvalues.  Relative error alone
is meaningless for values that are roundoff (a global minimum's loss is
~1e-25), hence the absolute floor, far below every classification tolerance.
End states, counts and curves must match exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

import pytest
import torch

from harness import HarnessError, hookimpl
from harness.batch import plan, run_batch
from harness.registry import Registry, build_plugin_manager
from harness.results import BatchResult
from harness.runner import run_spec
from harness.spec import Spec, parse_spec
from plugins.executors import LOOPBACK_ONLY_ENV, RAY_MISSING, task_resources

RAY_ABSENT = "ray is not installed: pip install 'landscape-harness[ray]'"

#: for every end-point float: relative, and an absolute floor for roundoff-sized values
FLOAT_RTOL, FLOAT_ATOL = 1e-10, 1e-15

EXACT_FIELDS = ("gamma", "width", "seed", "state", "steps", "met_tolerance", "index", "nullity",
                "near_kink_samples", "hessian_method", "refined")
FLOAT_FIELDS = ("loss", "grad_norm", "rel_loss_decrease", "lambda_min", "lambda_max", "min_abs_nonzero",
                "gram_lambda_min", "eig_tol_used", "lr_lambda_max")


def tiny_spec() -> Spec:
    """Two batches (two deltas), so that a resume can find one done and one missing.

    The float64 refinement turns the short training into a mix of global,
    spurious and unconverged end states, so that comparing states means something.
    """
    return parse_spec({
        "name": "executors",
        "seeds": 2,
        "grid": {"n": [12], "delta": [0.5, 1.0], "gamma": [0.25, 0.5, 1.0]},
        "optimizers": [{"name": "gd", "params": {"lr": 0.5}}],
        "training": {"max_steps": 200, "check_every": 50},
        "refine": {"optimizer": "newton", "max_steps": 50},
        "analysis": {"bootstrap": 20},
        "tracking": {"enabled": False},
    })


class FreshBatches:
    """Records, per batch, whether the run computed it (True) or resumed it (False)."""

    def __init__(self) -> None:
        self.fresh: dict[str, bool] = {}

    @hookimpl
    def harness_batch_finished(self, event) -> None:
        self.fresh[event.result.batch_id] = event.fresh


def driver_registry(*observers: Any) -> Registry:
    """Every installed plugin but the plot writer, which these comparisons do not need."""
    pm = build_plugin_manager()
    pm.unregister(name="plots")
    for observer in observers:
        pm.register(observer)
    return Registry(pm)


def summary(result: BatchResult) -> str:
    """Everything but timings and end-point floats, as canonical JSON (NaN compares equal)."""
    raw = result.to_json()
    raw.pop("elapsed_s")
    raw["endpoints"] = [{k: e[k] for k in EXACT_FIELDS} for e in raw["endpoints"]]
    return json.dumps(raw, sort_keys=True)


def assert_same_results(expected: list[BatchResult], actual: list[BatchResult]) -> None:
    assert [r.batch_id for r in actual] == [r.batch_id for r in expected]
    for want, got in zip(expected, actual):
        assert summary(got) == summary(want)
        for name in FLOAT_FIELDS:
            values = [getattr(e, name) for e in got.endpoints]
            wanted = [getattr(e, name) for e in want.endpoints]
            assert values == pytest.approx(wanted, rel=FLOAT_RTOL, abs=FLOAT_ATOL, nan_ok=True), name


@pytest.fixture(scope="module")
def registry_executor():
    """Looks an executor up by name, as the runner does."""
    registry = Registry()
    return lambda name: registry.get("executor", name).execute


@pytest.fixture(scope="module")
def local_ray():
    """A small Ray instance on loopback only, started by the test and so left running by the executor."""
    os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
    ray = pytest.importorskip("ray", reason=RAY_ABSENT)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert ray.util.get_node_ip_address() == "127.0.0.1", "the test's Ray instance must stay on loopback"
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The reference run, on one torch thread like a one-CPU Ray worker."""
    root = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_spec(tiny_spec(), driver_registry(), executor="local", results_root=root)
    finally:
        torch.set_num_threads(threads)


def test_ray_gives_the_local_results_and_leaves_the_callers_ray_running(local_ray, local_run, tmp_path):
    _, expected = local_run

    _, actual = run_spec(tiny_spec(), driver_registry(), executor="ray", results_root=tmp_path)

    assert_same_results(expected, actual)
    assert local_ray.is_initialized()


def test_ray_resumes_a_partial_store_like_local(local_ray, local_run, tmp_path):
    store, expected = local_run
    shutil.copytree(store.path, tmp_path / store.path.name)
    missing = expected[1].batch_id
    for record in (tmp_path / store.path.name / "batches").glob(f"{missing}.*"):
        record.unlink()
    observer = FreshBatches()

    _, actual = run_spec(tiny_spec(), driver_registry(observer), executor="ray", results_root=tmp_path)

    assert observer.fresh == {expected[0].batch_id: False, missing: True}
    assert_same_results(expected, actual)


def test_a_failing_batch_is_one_error_naming_it(local_ray, registry_executor):
    tasks = plan(tiny_spec())
    failing = tasks[1].batch_id

    def fail_one(task):
        if task.batch_id == failing:
            raise ValueError("no data for this batch")
        return task.batch_id

    with pytest.raises(HarnessError, match=rf"batch {failing} failed on a Ray worker: ValueError: no data"):
        list(registry_executor("ray")(tasks, fail_one))


def test_task_resources_take_one_gpu_each_where_the_cluster_has_gpus():
    assert task_resources({"CPU": 16.0, "GPU": 2.0}) == {"num_cpus": 1, "num_gpus": 1}
    assert task_resources({"CPU": 16.0}) == {"num_cpus": 1, "num_gpus": 0}


def test_missing_ray_says_how_to_install_it(monkeypatch, registry_executor):
    monkeypatch.setitem(sys.modules, "ray", None)

    with pytest.raises(HarnessError) as caught:
        list(registry_executor("ray")(plan(tiny_spec()), run_batch))

    assert str(caught.value) == RAY_MISSING


class FakeRay:
    """Just enough of ray's API to watch the executor start, use and stop an instance."""

    class exceptions:
        RayError = RuntimeError

    def __init__(self, gpus: int = 0) -> None:
        self.gpus = gpus
        self.running = False
        self.init_calls: list[dict[str, Any]] = []
        self.options: list[dict[str, Any]] = []

    def is_initialized(self) -> bool:
        return self.running

    def init(self, **kwargs: Any) -> None:
        self.running = True
        self.init_calls.append(kwargs)

    def shutdown(self) -> None:
        self.running = False

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 4.0, "GPU": float(self.gpus)}

    def remote(self, fn):
        fake = self

        class Remote:
            def options(self, **options: Any):
                fake.options.append(options)
                return self

            def remote(self, task):
                return lambda: fn(task)

        return Remote()

    def wait(self, refs: list, num_returns: int) -> tuple[list, list]:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref()

    def cancel(self, ref) -> None:
        pass


@pytest.mark.parametrize("address", [None, "ray://127.0.0.1:10001"])
def test_ray_started_by_the_executor_is_shut_down_after_the_run(monkeypatch, registry_executor, address):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    if address:
        monkeypatch.setenv("RAY_ADDRESS", address)
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    tasks = plan(tiny_spec())

    done = [task.batch_id for task, _ in registry_executor("ray")(tasks, lambda task: None)]

    assert sorted(done) == sorted(t.batch_id for t in tasks)
    assert fake.init_calls == [{"address": address} if address else {"address": "local", "include_dashboard": False}]
    assert not fake.running


def test_gpu_cluster_gives_each_batch_a_gpu_and_warns_when_the_spec_trains_on_cpu(
    monkeypatch, registry_executor, caplog
):
    fake = FakeRay(gpus=1)
    fake.running = True
    monkeypatch.setitem(sys.modules, "ray", fake)

    list(registry_executor("ray")(plan(tiny_spec()), lambda task: None))

    assert {o["num_gpus"] for o in fake.options} == {1}
    assert "training.device: auto" in caplog.text
    assert fake.running


def test_nothing_to_run_starts_no_ray(monkeypatch, registry_executor):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)

    assert list(registry_executor("ray")([], run_batch)) == []
    assert fake.init_calls == []
