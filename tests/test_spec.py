"""Spec loading, grids, overrides and validation messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.spec import Range, SpecError, apply_overrides, load_spec, parse_spec

from conftest import tiny_spec_dict

HARNESS = str(Path(sys.executable).parent / "harness")


def test_log_range_is_geometric_and_inclusive():
    values = Range(start=0.1, stop=10, num=3, scale="log").values()
    assert values == pytest.approx([0.1, 1.0, 10.0])


def test_width_expressions_relative_to_teacher():
    spec = parse_spec(tiny_spec_dict(grid={"n": [10], "delta": [1.0], "width": ["k", "k+1", 3]}))
    assert spec.grid.widths(10, teacher_width=6) == [6, 7, 3]


def test_overrides_parse_yaml_values():
    raw = apply_overrides(tiny_spec_dict(), ["training.max_steps=7", "grid.delta=[0.25, 2]", "teacher.noise=0.1"])
    spec = parse_spec(raw)
    assert spec.training.max_steps == 7
    assert spec.grid.deltas() == [0.25, 2.0]
    assert spec.teacher.noise == 0.1


def test_bad_override_syntax():
    with pytest.raises(HarnessError, match="dotted.key=value"):
        apply_overrides({}, ["training.max_steps"])


def test_every_problem_is_reported_with_its_path():
    raw = tiny_spec_dict(seeds=0, grid={"n": [1], "delta": [-1.0], "gamma": [0.5]}, typo_field=1)
    with pytest.raises(SpecError) as info:
        parse_spec(raw, "bad.yaml")
    message = str(info.value)
    for where in ("seeds", "grid.n", "grid.delta", "typo_field"):
        assert where in message
    assert message.startswith("bad.yaml: 4 problem(s)")


def test_digest_ignores_description_but_not_grid():
    a = parse_spec(tiny_spec_dict(description="x"))
    b = parse_spec(tiny_spec_dict(description="y"))
    c = parse_spec(tiny_spec_dict(seeds=3))
    assert a.digest() == b.digest() != c.digest()


def test_validate_cli_exits_2_with_one_readable_block(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad spec\ngrid: {n: [10], delta: [0.5]}\nseeds: -1\n")
    out = subprocess.run([HARNESS, "validate", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "name:" in out.stderr and "seeds:" in out.stderr and "grid:" in out.stderr


def test_validate_cli_lists_every_plugin_problem(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ngrid: {n: [10], delta: [0.5], gamma: [1]}\n"
        "activations: [relux, {name: leaky_relu, params: {slope: -1}}]\n"
        "optimizers: [{name: gd, params: {lrr: 0.1}}]\n"
    )
    out = subprocess.run([HARNESS, "validate", str(spec)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "activations.0: unknown activation 'relux'; available:" in out.stderr
    assert "activations.1.params.slope" in out.stderr and "optimizers.0.params.lrr" in out.stderr


def test_repeated_seeds_and_plugins_are_rejected():
    with pytest.raises(SpecError, match="seeds repeat"):
        parse_spec(tiny_spec_dict(seeds=[1, 1]))
    with pytest.raises(SpecError, match="same plugin"):
        parse_spec(tiny_spec_dict(optimizers=["gd", "gd"]))


def test_gammas_rounding_to_one_width_train_it_once():
    spec = parse_spec(tiny_spec_dict(grid={"n": [16], "delta": [0.5], "gamma": [0.01, 0.03, 0.5, 0.5]}))
    assert spec.grid.widths(16, teacher_width=8) == [1, 8]


def test_bad_override_value_is_one_line():
    with pytest.raises(HarnessError, match="not valid YAML"):
        apply_overrides({}, ["grid.delta=[0.5"])


def test_broken_yaml_is_one_line(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ngrid: {n: [10\n")
    with pytest.raises(HarnessError, match="not valid YAML at line"):
        load_spec(spec)


def test_shipped_specs_validate(registry):
    from harness.runner import check_plugins

    for path in sorted(Path("specs").rglob("*.yaml")):
        check_plugins(load_spec(path), registry)
