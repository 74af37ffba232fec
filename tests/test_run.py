"""End-to-end runs: store, resume after a kill, divergence, MLflow mirror."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.runner import run_spec
from harness.spec import parse_spec
from harness.store import RunStore

from conftest import tiny_spec_dict

HARNESS = str(Path(sys.executable).parent / "harness")


def test_run_stores_every_batch_and_classifies_every_model(tmp_path, registry):
    spec = parse_spec(tiny_spec_dict())
    store, results = run_spec(spec, registry, results_root=tmp_path)
    assert len(results) == 2
    assert {p.stem for p in store.batches_dir.glob("*.json")} == {r.batch_id for r in results}
    for r in results:
        assert len(r.endpoints) == 3 * 2
        assert {e.state for e in r.endpoints} <= {"global", "spurious_min", "saddle", "unconverged", "diverged"}
        assert r.kappa == pytest.approx(0.5, abs=1e-10)
        # every gamma of a seed sees the same data: identical teacher width and d
        assert all(e.hessian_method == "dense" for e in r.endpoints if e.state != "diverged")
    reloaded = RunStore.at(store.path).load_batches()

    def as_text(batches):  # NaN != NaN, so compare the serialised form
        return [json.dumps(b.to_json(), sort_keys=True) for b in sorted(batches, key=lambda b: b.batch_id)]

    assert as_text(reloaded) == as_text(results)


def test_nan_learning_rate_is_recorded_as_diverged(tmp_path, registry):
    spec = parse_spec(tiny_spec_dict(optimizers=[{"name": "gd", "params": {"lr": 1e8}}]))
    _, results = run_spec(spec, registry, results_root=tmp_path)
    states = [e.state for r in results for e in r.endpoints]
    assert states and set(states) == {"diverged"}
    assert all(math.isnan(e.lambda_min) for r in results for e in r.endpoints)


def test_killed_run_resumes_without_recomputing(tmp_path):
    raw = tiny_spec_dict(grid={"n": [12], "delta": [0.25, 0.5, 1.0, 1.5], "gamma": [0.1, 0.5, 2.0]})
    raw["training"] = {"max_steps": 4000, "check_every": 25}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    results = tmp_path / "results"
    cmd = [HARNESS, "run", str(spec_file), "--no-tracking", "--results", str(results)]

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list(results.glob("*/batches/*.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    first = {p.name: p.stat().st_mtime_ns for p in results.glob("*/batches/*.json")}
    assert 1 <= len(first) < 4, "the run must be killed after its first batch and before its last"

    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"{len(first)} already done (resuming)" in out.stderr
    after = {p.name: p.stat().st_mtime_ns for p in results.glob("*/batches/*.json")}
    assert len(after) == 4
    assert all(after[name] == mtime for name, mtime in first.items())
    assert not list(results.glob("*/batches/.*.tmp"))


def test_mlflow_mirror_has_parent_children_metrics_and_plot(tmp_path, registry, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec(tiny_spec_dict(tracking={"enabled": True}))
    store, results = run_spec(spec, registry, tracking_uri=uri, results_root=tmp_path / "runs")

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == len(results) == 2

    metrics = children[0].data.metrics
    assert metrics["kappa"] == pytest.approx(0.5, abs=1e-10)
    assert "success_rate" in metrics
    assert children[0].data.params["activation"] == "relu"
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert "spec.yaml" in artifacts and "claims_report.md" in artifacts and "results.csv" in artifacts
    assert any(p.startswith("phase_diagram") and p.endswith(".png") for p in artifacts)

    # a second run of the same spec reopens the parent and logs no duplicate child
    run_spec(spec, registry, tracking_uri=uri, results_root=tmp_path / "runs")
    assert len(client.search_runs([experiment.experiment_id])) == 3


def test_missing_tracking_server_fails_fast_before_training(tmp_path, registry):
    spec = parse_spec(tiny_spec_dict(tracking={"enabled": True}))
    started = time.time()
    with pytest.raises(HarnessError, match="not reachable"):
        run_spec(spec, registry, tracking_uri="http://127.0.0.1:9", results_root=tmp_path)
    assert time.time() - started < 30
    assert not list(tmp_path.glob("*/batches/*.json"))


def test_perturb_check_records_a_drop_for_spurious_and_stuck_points(tmp_path, registry):
    raw = tiny_spec_dict(perturb_check={"trials": 2, "scale": 1e-2, "steps": 50})
    _, results = run_spec(parse_spec(raw), registry, results_root=tmp_path)
    endpoints = [e for r in results for e in r.endpoints]
    checked = [e for e in endpoints if e.state in ("spurious_min", "unconverged")]
    assert checked, "the tiny spec must leave some points to check"
    assert all(math.isfinite(e.perturb_loss_drop) and e.perturb_escaped is not None for e in checked)
    assert all(e.perturb_escaped is None for e in endpoints if e.state == "global")


def test_a_corrupted_batch_record_is_recomputed(tmp_path, registry):
    spec = parse_spec(tiny_spec_dict())
    store, _ = run_spec(spec, registry, results_root=tmp_path)
    record = sorted(store.batches_dir.glob("*.json"))[0]
    record.write_text(record.read_text()[:200])

    _, results = run_spec(spec, registry, results_root=tmp_path)
    assert len(results) == 2
    assert json.loads(record.read_text())["batch_id"] == record.stem
