"""Success fraction versus gamma, and where it crosses one half.

The transition is a logistic fit in ``log gamma`` to the per-run outcomes
(maximum likelihood), with a stratified bootstrap over runs at each gamma for
its interval.  "No transition in the grid" is a valid answer, never forced
into a number.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

from harness.results import STATES, CurvePoint, EndPoint, Transition

SUCCESS_STATE = "global"

#: logistic slope floor, in units of log gamma; keeps separable data finite
_MIN_SCALE = 1e-3
#: 10%-90% width of a logistic is 2 ln 9 scales
_WIDTH_FACTOR = 2.0 * math.log(9.0)


def success_curve(endpoints: Sequence[EndPoint]) -> list[CurvePoint]:
    by_gamma: dict[float, list[EndPoint]] = defaultdict(list)
    for e in endpoints:
        by_gamma[e.gamma].append(e)
    curve = []
    for gamma in sorted(by_gamma):
        group = by_gamma[gamma]
        counts = Counter(e.state for e in group)
        curve.append(
            CurvePoint(
                gamma=gamma,
                width=group[0].width,
                runs=len(group),
                successes=counts.get(SUCCESS_STATE, 0),
                counts={s: counts.get(s, 0) for s in STATES},
            )
        )
    return curve


def _fit(log_gamma: np.ndarray, outcome: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood ``(mu, scale)`` of ``P(success) = sigmoid((log gamma - mu) / scale)``."""
    lo, hi = float(log_gamma.min()), float(log_gamma.max())

    def nll(p: np.ndarray) -> float:
        mu, log_scale = p
        z = (log_gamma - mu) / math.exp(log_scale)
        return float(np.sum(np.logaddexp(0.0, -z) * outcome + np.logaddexp(0.0, z) * (1 - outcome)))

    span = max(hi - lo, 1e-6)
    start = np.array([0.5 * (lo + hi), math.log(span / 4)])
    bounds = [(lo - span, hi + span), (math.log(_MIN_SCALE * span), math.log(10 * span))]
    res = minimize(nll, start, method="L-BFGS-B", bounds=bounds)
    return float(res.x[0]), math.exp(float(res.x[1]))


def _no_transition(outcome: np.ndarray) -> str | None:
    if outcome.all():
        return "no transition in the grid: every run succeeded"
    if not outcome.any():
        return "no transition in the grid: no run succeeded"
    return None


def estimate_transition(
    endpoints: Sequence[EndPoint], bootstrap: int, confidence: float, seed: int = 0
) -> Transition:
    gammas = np.array([e.gamma for e in endpoints], dtype=float)
    outcome = np.array([e.state == SUCCESS_STATE for e in endpoints], dtype=float)
    log_gamma = np.log(gammas)

    reason = _no_transition(outcome)
    if reason is not None or np.unique(gammas).size < 2:
        return Transition(None, None, None, None, reason or "no transition: a single gamma")

    mu, scale = _fit(log_gamma, outcome)
    if not (log_gamma.min() <= mu <= log_gamma.max()):
        return Transition(None, None, None, None, "no transition in the grid: the fit crosses 1/2 outside it")

    gamma_hat = math.exp(mu)
    width = math.exp(mu + scale * _WIDTH_FACTOR / 2) - math.exp(mu - scale * _WIDTH_FACTOR / 2)
    ci_low, ci_high, failures = _bootstrap(log_gamma, outcome, bootstrap, confidence, seed)
    return Transition(gamma_hat, ci_low, ci_high, width, "ok", failures)


def _bootstrap(
    log_gamma: np.ndarray, outcome: np.ndarray, resamples: int, confidence: float, seed: int
) -> tuple[float | None, float | None, int]:
    """Percentile interval of gamma_hat; resamples runs within each gamma."""
    if resamples == 0:
        return None, None, 0
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(log_gamma == g) for g in np.unique(log_gamma)]
    estimates = []
    failures = 0
    for _ in range(resamples):
        idx = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
        sample_outcome = outcome[idx]
        if _no_transition(sample_outcome) is not None:
            failures += 1
            continue
        mu, _ = _fit(log_gamma[idx], sample_outcome)
        estimates.append(mu)
    if len(estimates) < max(2, resamples // 2):
        # most resamples had no transition: an interval from the rest would overstate certainty
        return None, None, failures
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(estimates, [tail, 100 - tail])
    return math.exp(lo), math.exp(hi), failures
