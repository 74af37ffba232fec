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


def _nll_grid(
    log_gamma: np.ndarray, successes: np.ndarray, runs: np.ndarray, mus: np.ndarray, scales: np.ndarray
) -> np.ndarray:
    z = (log_gamma[None, None, :] - mus[:, None, None]) / scales[None, :, None]
    per_gamma = np.logaddexp(0.0, -z) * successes + np.logaddexp(0.0, z) * (runs - successes)
    return per_gamma.sum(axis=2)


def _separating_gap(log_gamma: np.ndarray, successes: np.ndarray, runs: np.ndarray) -> tuple[float, float] | None:
    """The grid interval holding the transition when failures and successes do not overlap.

    Then every crossing point inside the gap fits equally well: the data
    locate the transition only to that interval.
    """
    failed_all = successes == 0
    won_all = successes == runs
    if not np.all(failed_all | won_all):
        return None
    last_fail = np.flatnonzero(failed_all)
    first_win = np.flatnonzero(won_all)
    if last_fail.size == 0 or first_win.size == 0 or last_fail.max() > first_win.min():
        return None
    return float(log_gamma[last_fail.max()]), float(log_gamma[first_win.min()])


def _fit(log_gamma: np.ndarray, successes: np.ndarray, runs: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood ``(mu, scale)`` of ``P(success) = sigmoid((log gamma - mu) / scale)``.

    The likelihood depends on the runs only through the success counts at
    each gamma.  With two parameters a vectorised grid search, zoomed in
    four times, is exact to about 1e-4 of the grid span and cannot stall the
    way a gradient method does on separable data.
    """
    lo, hi = float(log_gamma.min()), float(log_gamma.max())
    span = max(hi - lo, 1e-6)
    gap = _separating_gap(log_gamma, successes, runs)
    if gap is not None:
        # the likelihood is flat across the gap: take its middle, at the steepest slope
        return 0.5 * (gap[0] + gap[1]), _MIN_SCALE * span
    mu_lo, mu_hi = lo - span, hi + span
    log_s_lo, log_s_hi = math.log(_MIN_SCALE * span), math.log(10 * span)
    for _ in range(4):
        mus = np.linspace(mu_lo, mu_hi, 81)
        log_scales = np.linspace(log_s_lo, log_s_hi, 41)
        nll = _nll_grid(log_gamma, successes, runs, mus, np.exp(log_scales))
        i, j = np.unravel_index(np.argmin(nll), nll.shape)
        mu_step, s_step = mus[1] - mus[0], log_scales[1] - log_scales[0]
        mu_lo, mu_hi = mus[i] - 2 * mu_step, mus[i] + 2 * mu_step
        log_s_lo = max(log_scales[j] - 2 * s_step, math.log(_MIN_SCALE * span))
        log_s_hi = log_scales[j] + 2 * s_step
    return float(mus[i]), float(math.exp(log_scales[j]))


def _no_transition(successes: np.ndarray, runs: np.ndarray) -> str | None:
    if np.all(successes == runs):
        return "no transition in the grid: every run succeeded"
    if not np.any(successes):
        return "no transition in the grid: no run succeeded"
    return None


def estimate_transition(
    endpoints: Sequence[EndPoint], bootstrap: int, confidence: float, seed: int = 0
) -> Transition:
    curve = success_curve(endpoints)
    log_gamma = np.log([p.gamma for p in curve])
    successes = np.array([p.successes for p in curve], dtype=float)
    runs = np.array([p.runs for p in curve], dtype=float)

    reason = _no_transition(successes, runs)
    if reason is not None or log_gamma.size < 2:
        return Transition(None, None, None, None, reason or "no transition: a single gamma")

    mu, scale = _fit(log_gamma, successes, runs)
    if not (log_gamma.min() <= mu <= log_gamma.max()):
        return Transition(None, None, None, None, "no transition in the grid: the fit crosses 1/2 outside it")

    gamma_hat = math.exp(mu)
    ci_low, ci_high, failures = _bootstrap(log_gamma, successes, runs, bootstrap, confidence, seed)
    gap = _separating_gap(log_gamma, successes, runs)
    if gap is not None:
        # a step between two grid points: the grid, not the bootstrap, bounds what is known
        lo, hi = math.exp(gap[0]), math.exp(gap[1])
        return Transition(gamma_hat, min(lo, ci_low or lo), max(hi, ci_high or hi), hi - lo,
                          "ok: a step between two grid points; width is an upper bound", failures)
    width = math.exp(mu + scale * _WIDTH_FACTOR / 2) - math.exp(mu - scale * _WIDTH_FACTOR / 2)
    return Transition(gamma_hat, ci_low, ci_high, width, "ok", failures)


def _bootstrap(
    log_gamma: np.ndarray, successes: np.ndarray, runs: np.ndarray, resamples: int, confidence: float, seed: int
) -> tuple[float | None, float | None, int]:
    """Percentile interval of gamma_hat, resampling the runs at each gamma with replacement."""
    if resamples == 0:
        return None, None, 0
    rng = np.random.default_rng(seed)
    drawn = rng.binomial(runs.astype(int), successes / runs, size=(resamples, runs.size)).astype(float)
    estimates = []
    failures = 0
    for sample in drawn:
        if _no_transition(sample, runs) is not None:
            failures += 1
            continue
        estimates.append(_fit(log_gamma, sample, runs)[0])
    if len(estimates) < max(2, resamples // 2):
        # most resamples had no transition: an interval from the rest would overstate certainty
        return None, None, failures
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(estimates, [tail, 100 - tail])
    return math.exp(lo), math.exp(hi), failures
