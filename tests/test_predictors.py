"""The gamma* predictors, the prediction table and plot, and ``harness predict``."""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from harness import PredictionContext
from harness.commands import predict as predict_command
from harness.errors import HarnessError
from harness.predict import (
    PredictionRow,
    draw_predictions,
    format_table,
    plot_predictions,
    prediction_table,
    resolve_setting,
)
from harness.registry import Registry
from harness.spectral import LimitingSpectrum
from plugins.predictors import gated_spectral_function

EXPECTED = {
    "isotropic",
    "general_activation",
    "spectral_eq11",
    "spectral_sec51",
    "gated_root",
    "anisotropic_lower",
    "anisotropic_upper",
    "parameter_count",
    "teacher_width",
}
SPECTRAL = ("spectral_eq11", "spectral_sec51", "gated_root")
NEEDS_SPECTRUM = SPECTRAL + ("anisotropic_lower", "anisotropic_upper")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def context(delta: float, spectrum: np.ndarray | None = None, **changes) -> PredictionContext:
    n = 100
    d = round(delta * n)
    values = {
        "delta": delta,
        "n": n,
        "d": d,
        "kappa": 0.5,
        "activation": "relu",
        "gamma_teacher": 0.5,
        "spectrum": np.ones(d) if spectrum is None else spectrum,
    }
    values.update(changes)
    return PredictionContext(**values)


def predict(registry: Registry, name: str, ctx: PredictionContext):
    return registry.get("predictor", name).predict(ctx)


def test_every_predictor_is_installed_and_documented(registry):
    predictors = {p.name: p for p in registry.all("predictor")}
    assert EXPECTED <= set(predictors)
    for name in EXPECTED:
        assert predictors[name].description and predictors[name].source


# -- the formulas as written -------------------------------------------------------------


@pytest.mark.parametrize("delta", [0.1, 0.5, 1.0, 2.0, 7.0])
def test_isotropic_and_general_activation_formulas(registry, delta):
    assert predict(registry, "isotropic", context(delta)).value == pytest.approx(4.0 / (2.0 + 3.0 * delta))
    # Eq. (20) with kappa(ReLU) = 1/2 is Eq. (12)
    assert predict(registry, "general_activation", context(delta)).value == pytest.approx(4.0 / (2.0 + 3.0 * delta))
    tanh = context(delta, kappa=0.4645, activation="tanh")
    assert predict(registry, "general_activation", tanh).value == pytest.approx(2.0 / (0.4645 * (2.0 + 3.0 * delta)))


def test_isotropic_value_at_delta_one_is_four_fifths(registry):
    assert predict(registry, "isotropic", context(1.0)).value == pytest.approx(0.8)


@pytest.mark.parametrize("delta", [0.05, 0.3, 0.5, 0.9])
def test_spectral_formulas_for_identity_covariance(registry, delta):
    """With Int 1/lambda = s(0-) = 1/(1-delta), Int 1/lambda^2 = 1/(1-delta)^3, Int lambda = 1."""
    ctx = context(delta)
    assert predict(registry, "spectral_eq11", ctx).value == pytest.approx(0.8 * (1.0 - delta), rel=1e-10)
    sec51 = 1.0 / (0.5 / (1.0 - delta) + 0.25 / (1.0 - delta) ** 3)
    assert predict(registry, "spectral_sec51", ctx).value == pytest.approx(sec51, rel=1e-10)
    assert predict(registry, "gated_root", ctx).value == pytest.approx(2.0 * (1.0 - delta) / 3.0, rel=1e-10)


@pytest.mark.parametrize("delta", [0.2, 0.5, 0.8])
def test_spectral_formulas_do_not_reduce_to_eq12_for_identity_covariance(registry, delta):
    """The paper says they do (Sec. 5.1, Prop. 6.1); as written they do not."""
    isotropic = 4.0 / (2.0 + 3.0 * delta)
    for name in SPECTRAL:
        assert abs(predict(registry, name, context(delta)).value - isotropic) > 0.1


@pytest.mark.parametrize("scale", [0.25, 4.0])
def test_spectral_formulas_scale_with_the_covariance(registry, scale):
    """Sigma -> c Sigma multiplies each C4 gamma* by c, although rescaling the
    inputs of a ReLU network can be absorbed into W."""
    spectrum = np.repeat([1.0, 5.0], 25)
    for name in SPECTRAL:
        base = predict(registry, name, context(0.5, spectrum=spectrum)).value
        scaled = predict(registry, name, context(0.5, spectrum=scale * spectrum)).value
        assert scaled == pytest.approx(scale * base, rel=1e-10)


def test_gated_root_is_a_root_of_the_gated_spectral_function(registry):
    spectrum = np.repeat([1.0, 3.0, 9.0], 20)
    ctx = context(0.6, spectrum=spectrum)
    gamma_star = predict(registry, "gated_root", ctx).value
    nu = LimitingSpectrum(spectrum, 0.6)
    assert gated_spectral_function(nu, gamma_star) == pytest.approx(0.0, abs=1e-12)
    assert gated_spectral_function(nu, 0.99 * gamma_star) < 0.0 < gated_spectral_function(nu, 1.01 * gamma_star)


def test_gated_spectral_function_approaches_its_value_at_zero_from_the_left():
    nu = LimitingSpectrum(np.repeat([1.0, 4.0], 10), 0.4)
    at_zero = gated_spectral_function(nu, 0.7)
    near = [gated_spectral_function(nu, 0.7, -eps) for eps in (1e-2, 1e-4, 1e-6)]
    assert abs(near[-1] - at_zero) < abs(near[0] - at_zero) and near[-1] == pytest.approx(at_zero, abs=1e-5)


@pytest.mark.parametrize("delta", [1.0, 1.5, 4.0])
def test_spectral_formulas_give_zero_with_a_reason_when_s_diverges(registry, delta):
    for name in SPECTRAL:
        prediction = predict(registry, name, context(delta))
        assert prediction.value == 0.0
        assert "s_nu(0-) = +inf" in prediction.reason


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.0])
def test_anisotropic_bounds_equal_isotropic_at_condition_number_one(registry, delta):
    isotropic = predict(registry, "isotropic", context(delta)).value
    assert predict(registry, "anisotropic_lower", context(delta)).value == pytest.approx(isotropic)
    assert predict(registry, "anisotropic_upper", context(delta)).value == pytest.approx(isotropic)


@pytest.mark.parametrize("condition", [1.0, 2.0, 50.0])
def test_anisotropic_bounds_contain_the_isotropic_value(registry, condition):
    spectrum = np.geomspace(1.0, condition, 50)
    ctx = context(0.5, spectrum=spectrum)
    lower = predict(registry, "anisotropic_lower", ctx).value
    upper = predict(registry, "anisotropic_upper", ctx).value
    assert lower <= 4.0 / (2.0 + 3.0 * 0.5) <= upper
    assert upper == pytest.approx(4.0 * condition / 3.5)


def test_baselines(registry):
    ctx = context(0.5, gamma_teacher=0.25)
    assert predict(registry, "parameter_count", ctx).value == pytest.approx(1.0 / 51.0)
    assert predict(registry, "teacher_width", ctx).value == 0.25


def test_notes_flag_violated_assumptions(registry):
    skewed = context(0.5, spectrum=np.geomspace(1.0, 10.0, 50))
    assert "condition number is 10" in predict(registry, "isotropic", skewed).reason
    assert "ReLU" in predict(registry, "isotropic", context(0.5, activation="tanh")).reason
    assert predict(registry, "isotropic", context(0.5)).reason == ""


# -- missing or invalid inputs -------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"spectrum": None},
        {"spectrum": np.array([np.nan, 1.0])},
        {"spectrum": np.array([-1.0, 1.0])},
        {"kappa": math.nan},
        {"kappa": 0.0},
        {"gamma_teacher": math.nan},
        {"delta": math.nan},
        {"delta": -1.0},
        {"d": 0},
    ],
    ids=lambda c: next(iter(c)) + "=" + repr(next(iter(c.values())))[:12],
)
def test_missing_inputs_give_none_with_a_reason_never_nan(registry, changes):
    ctx = dataclasses.replace(context(0.5), **changes)
    for predictor in registry.all("predictor"):
        prediction = predictor.predict(ctx)
        if prediction.value is None:
            assert prediction.reason, predictor.name
        else:
            assert math.isfinite(prediction.value), predictor.name


def test_unknown_spectrum_refuses_the_spectral_predictors(registry):
    ctx = PredictionContext(delta=0.5, n=100, d=50, kappa=0.5, activation="relu", gamma_teacher=0.5, spectrum=None)
    for name in NEEDS_SPECTRUM:
        prediction = predict(registry, name, ctx)
        assert prediction.value is None and "spectrum" in prediction.reason


# -- table, plot and command ---------------------------------------------------------------


def test_prediction_table_for_relu_on_gaussian_data(registry):
    rows = {row.predictor: row for row in prediction_table(registry, 1.0, "relu", "gaussian", n=100)}
    assert EXPECTED <= set(rows)
    assert rows["isotropic"].value == pytest.approx(0.8)
    assert rows["parameter_count"].value == pytest.approx(1.0 / 101.0)
    assert rows["spectral_eq11"].value == 0.0


def test_format_table_aligns_columns():
    rows = [
        PredictionRow("a", 0.5, "Eq. (1)", ""),
        PredictionRow("longer_name", None, "Sec. 2", "why not"),
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["predictor", "gamma*", "source", "note"]
    assert "0.5000" in lines[2] and "n/a" in lines[3]
    assert lines[2].index("Eq. (1)") == lines[3].index("Sec. 2") == lines[0].index("source")


def test_draw_predictions_labels_applicable_curves():
    by_delta = {
        0.5: [PredictionRow("shown", 1.0, "", ""), PredictionRow("never", None, "", "no spectrum")],
        1.0: [PredictionRow("shown", 0.8, "", ""), PredictionRow("never", None, "", "no spectrum")],
    }
    ax = Figure().add_subplot()
    lines = draw_predictions(ax, by_delta)
    assert [line.get_label() for line in lines] == ["shown"]
    np.testing.assert_allclose(lines[0].get_ydata(), [1.0, 0.8])


def test_plot_predictions_writes_a_figure(registry, tmp_path):
    path = plot_predictions(registry, [0.25, 0.5, 1.0, 2.0], tmp_path / "predictions.png")
    assert path.stat().st_size > 0


def test_bad_plugin_parameters_are_one_line_errors(registry):
    with pytest.raises(HarnessError, match="slope"):
        resolve_setting(registry, "leaky_relu", activation_params={"slope": -1.0})
    with pytest.raises(HarnessError, match="unknown activation"):
        resolve_setting(registry, "no_such_activation")


def command_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="harness")
    predict_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["predict", *argv])


def test_predict_command_prints_a_table_per_delta(registry, capsys):
    assert predict_command.run(command_args("--delta", "0.5", "1"), registry) == 0
    out = capsys.readouterr().out
    assert [line.split(",")[0] for line in out.splitlines() if line.startswith("delta = ")] == [
        "delta = 0.5",
        "delta = 1",
    ]
    assert "0.8000" in out and "1.1429" in out
    for name in EXPECTED:
        assert name in out


def test_predict_command_plots_a_delta_range(registry, tmp_path, capsys):
    path = tmp_path / "range.png"
    args = command_args("--delta-range", "0.1", "2", "5", "--plot", str(path))
    assert predict_command.run(args, registry) == 0
    assert path.exists() and f"wrote {path}" in capsys.readouterr().out


def test_predict_command_parses_parameters(registry, capsys):
    args = command_args("--delta", "0.5", "--activation", "leaky_relu", "--activation-param", "slope=0.2")
    assert predict_command.run(args, registry) == 0
    assert "kappa = 0.5200" in capsys.readouterr().out
    assert predict_command.parse_assignments(["a=3", "b=[1, 2]", "c=x"], "--data-param") == {
        "a": 3,
        "b": [1, 2],
        "c": "x",
    }


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--delta", "0.5", "--data-param", "oops"], "KEY=VALUE"),
        (["--delta", "0.5", "--data-param", "a=1", "--data-param", "a=2"], "twice"),
        (["--delta", "-1"], "positive"),
        ([], "--delta"),
        (["--delta-range", "0.1", "1", "5"], "--plot"),
        (["--delta-range", "1", "0.1", "5", "--plot", "x.png"], "START < STOP"),
        (["--delta", "0.001", "--n", "10"], "d = 0"),
        (["--delta", "0.5", "--activation", "nope"], "unknown activation"),
    ],
)
def test_predict_command_rejects_bad_input(registry, argv, message):
    with pytest.raises(HarnessError, match=message):
        predict_command.run(command_args(*argv), registry)
