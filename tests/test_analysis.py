"""Transition estimates on outcome patterns whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis import estimate_transition, success_curve
from harness.results import EndPoint


def _point(gamma: float, state: str, seed: int = 0) -> EndPoint:
    nan = math.nan
    return EndPoint(
        gamma=gamma, width=round(gamma * 100), seed=seed, state=state, loss=0.0, grad_norm=0.0, steps=1,
        met_tolerance=True, rel_loss_decrease=0.0, lr_lambda_max=nan, lambda_min=nan, lambda_max=nan,
        index=nan, nullity=nan, min_abs_nonzero=nan, gram_lambda_min=nan, eig_tol_used=nan,
        near_kink_samples=0, hessian_method="none", refined=False,
    )


def test_all_success_or_all_failure_is_no_transition():
    everything = [_point(g, "global") for g in (0.1, 0.5, 1.0)]
    nothing = [_point(g, "saddle") for g in (0.1, 0.5, 1.0)]
    assert estimate_transition(everything, 50, 0.9).gamma_hat is None
    assert "no run succeeded" in estimate_transition(nothing, 50, 0.9).status


def test_a_sharp_step_is_located_only_to_its_grid_gap():
    points = [_point(g, "global" if g > 0.3 else "spurious_min", s) for g in (0.1, 0.2, 0.4, 0.8) for s in range(3)]
    t = estimate_transition(points, 50, 0.9)
    assert t.gamma_hat == pytest.approx(math.sqrt(0.2 * 0.4))
    assert t.ci_low <= 0.2 and t.ci_high >= 0.4
    assert "between two grid points" in t.status


def test_logistic_data_recovers_its_midpoint():
    rng = np.random.default_rng(0)
    gammas = np.geomspace(0.05, 5, 15)
    points = []
    for g in gammas:
        p = 1 / (1 + math.exp(-(math.log(g) - math.log(0.5)) / 0.3))
        points += [_point(float(g), "global" if rng.random() < p else "saddle", s) for s in range(200)]
    t = estimate_transition(points, 100, 0.9)
    assert t.gamma_hat == pytest.approx(0.5, rel=0.05)
    assert t.ci_low < 0.5 < t.ci_high
    expected_width = 0.5 * (math.exp(0.3 * math.log(9)) - math.exp(-0.3 * math.log(9)))
    assert t.width == pytest.approx(expected_width, rel=0.15)


def test_curve_counts_every_state():
    curve = success_curve([_point(0.1, "global"), _point(0.1, "diverged"), _point(0.2, "saddle")])
    assert [(p.gamma, p.successes, p.runs) for p in curve] == [(0.1, 1, 2), (0.2, 0, 1)]
    assert curve[0].counts["diverged"] == 1
