"""The limiting spectrum nu = MP(delta) boxtimes mu_Sigma against Monte Carlo and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from harness.spectral import LimitingSpectrum

# at d = 1000, n = 2000 the Monte-Carlo error of Int lambda^-2 is itself
# about 1% (an O(1/d) bias of 0.5% plus 0.5% spread over seeds); d = 2000
# halves both, so a 1% tolerance tests the numerics rather than the luck
D = 2000
N_BELOW = 4000  # delta = 0.5
D_ABOVE, N_ABOVE = 2000, 1000  # delta = 2
MOMENT_RTOL = 0.01
KOLMOGOROV_MAX = 0.02

POPULATIONS = {
    "isotropic": np.ones(D),
    "two_level": np.repeat([1.0, 10.0], D // 2),
    "geometric": 20.0 ** (np.arange(D) / (D - 1)),
}


def sample_covariance_eigenvalues(population: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted eigenvalues of ``X^T X / n`` for ``n`` rows ``x ~ N(0, diag(population))``.

    For ``d > n`` the ``n`` non-zero ones come from the smaller ``X X^T / n``
    and the rest are exact zeros, so the atom at 0 is not blurred by rounding.
    """
    rng = np.random.default_rng(seed)
    d = population.size
    x = rng.standard_normal((n, d)) * np.sqrt(population)
    if d <= n:
        eigenvalues = np.linalg.eigvalsh(x.T @ x / n)
    else:
        eigenvalues = np.concatenate([np.zeros(d - n), np.linalg.eigvalsh(x @ x.T / n)])
    return np.sort(eigenvalues)


def kolmogorov_distance(cdf, sorted_sample: np.ndarray) -> float:
    """``sup |F - ECDF|``, checked on both sides of every jump of the ECDF (ties included)."""
    size = sorted_sample.size
    values = np.unique(sorted_sample)
    right = np.searchsorted(sorted_sample, values, side="right") / size
    left = np.searchsorted(sorted_sample, values, side="left") / size
    return float(max(np.abs(cdf(values) - right).max(), np.abs(cdf(np.nextafter(values, -np.inf)) - left).max()))


@pytest.fixture(scope="module")
def monte_carlo_below() -> dict[str, np.ndarray]:
    # on a busy 2-core machine OpenBLAS threads spin against each other and
    # these eigendecompositions take 3x longer than on one thread
    with threadpool_limits(limits=1, user_api="blas"):
        return {name: sample_covariance_eigenvalues(pop, N_BELOW, seed=11) for name, pop in POPULATIONS.items()}


# -- Monte Carlo ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(POPULATIONS))
@pytest.mark.parametrize("k", [1, 2, -1, -2])
def test_moments_match_monte_carlo(monte_carlo_below, name, k):
    nu = LimitingSpectrum(POPULATIONS[name], D / N_BELOW)
    empirical = float(np.mean(monte_carlo_below[name] ** k))
    assert nu.moment(k) == pytest.approx(empirical, rel=MOMENT_RTOL)


@pytest.mark.parametrize("name", list(POPULATIONS))
def test_distribution_matches_monte_carlo(monte_carlo_below, name):
    nu = LimitingSpectrum(POPULATIONS[name], D / N_BELOW)
    assert kolmogorov_distance(nu.cdf, monte_carlo_below[name]) < KOLMOGOROV_MAX


def test_atom_and_distribution_above_one_match_monte_carlo():
    population = np.repeat([1.0, 10.0], D_ABOVE // 2)
    with threadpool_limits(limits=1, user_api="blas"):
        eigenvalues = sample_covariance_eigenvalues(population, N_ABOVE, seed=12)
    nu = LimitingSpectrum(population, D_ABOVE / N_ABOVE)

    assert nu.atom_at_zero == pytest.approx(1.0 - N_ABOVE / D_ABOVE)
    assert kolmogorov_distance(nu.cdf, eigenvalues) < KOLMOGOROV_MAX
    for k in (1, 2):
        assert nu.moment(k) == pytest.approx(float(np.mean(eigenvalues**k)), rel=MOMENT_RTOL)


def test_stieltjes_matches_the_empirical_resolvent(monte_carlo_below):
    nu = LimitingSpectrum(POPULATIONS["two_level"], D / N_BELOW)
    z = np.array([2.0 + 1.0j, 12.0 + 0.5j, -3.0 + 0.0j, 0.5 - 2.0j])
    empirical = np.mean(1.0 / (monte_carlo_below["two_level"][None, :] - z[:, None]), axis=1)
    np.testing.assert_allclose(nu.stieltjes(z), empirical, rtol=0.01)


# -- closed forms ------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [0.1, 0.5, 0.9])
def test_isotropic_negative_moments_are_the_inverse_wishart_limits(delta):
    nu = LimitingSpectrum(np.ones(5), delta)
    assert float(nu.stieltjes_left(0.0)[0][0]) == pytest.approx(1.0 / (1.0 - delta), rel=1e-8)
    assert nu.moment(-1) == pytest.approx(1.0 / (1.0 - delta), rel=1e-8)
    assert nu.moment(-2) == pytest.approx(1.0 / (1.0 - delta) ** 3, rel=1e-8)


@pytest.mark.parametrize("delta", [0.2, 0.7])
def test_general_negative_moments_are_the_inverse_wishart_limits(delta):
    population = POPULATIONS["geometric"]
    inv1, inv2 = np.mean(1.0 / population), np.mean(1.0 / population**2)
    nu = LimitingSpectrum(population, delta)
    assert nu.moment(-1) == pytest.approx(inv1 / (1.0 - delta), rel=1e-8)
    assert nu.moment(-2) == pytest.approx(inv2 / (1.0 - delta) ** 2 + delta * inv1**2 / (1.0 - delta) ** 3, rel=1e-8)


def marchenko_pastur_stieltjes(z: np.ndarray, delta: float) -> np.ndarray:
    root = np.sqrt((z - 1.0 - delta) ** 2 - 4.0 * delta + 0j)
    plus, minus = ((1.0 - delta - z + sign * root) / (2.0 * delta * z) for sign in (1.0, -1.0))
    # the Stieltjes transform maps each half-plane into itself
    return np.where(np.sign(plus.imag) == np.sign(z.imag), plus, minus)


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_isotropic_stieltjes_and_density_are_marchenko_pastur(delta):
    nu = LimitingSpectrum(np.ones(3), delta)
    z = np.array([1.0 + 1.0j, 0.5 + 0.01j, -2.0 + 0.3j, 3.0 - 1.0j, 7.0 + 1e-3j])
    np.testing.assert_allclose(nu.stieltjes(z), marchenko_pastur_stieltjes(z, delta), rtol=1e-10)

    lower, upper = (1.0 - math.sqrt(delta)) ** 2, (1.0 + math.sqrt(delta)) ** 2
    x = np.linspace(0.05, upper + 1.0, 400)
    inside = (x > lower) & (x < upper)
    expected = np.zeros_like(x)
    expected[inside] = np.sqrt((upper - x[inside]) * (x[inside] - lower)) / (2.0 * math.pi * delta * x[inside])
    np.testing.assert_allclose(nu.density(x), expected, atol=1e-5)


@pytest.mark.parametrize("delta", [0.4, 1.0, 3.0])
def test_isotropic_negative_axis_matches_marchenko_pastur(delta):
    nu = LimitingSpectrum(np.ones(2), delta)
    x = np.array([-5.0, -1.0, -0.01])
    # on the negative axis the two roots of the MP quadratic are real with
    # product 1/(delta x) < 0; s(x) = Int 1/(lambda - x) is the positive one
    root = np.sqrt((x - 1.0 - delta) ** 2 - 4.0 * delta)
    expected = (1.0 - delta - x - root) / (2.0 * delta * x)
    assert np.all(expected > 0.0)
    np.testing.assert_allclose(nu.stieltjes_left(x)[0], expected, rtol=1e-10)


def test_positive_moments_match_the_density():
    nu = LimitingSpectrum(POPULATIONS["two_level"], 0.5)
    lower, upper = nu.support_bounds
    x = np.linspace(lower, upper, 20_001)
    weights = nu.density(x)
    for k in (1, 2):
        assert np.trapezoid(x**k * weights, x) == pytest.approx(nu.moment(k), rel=1e-3)


# -- structure of nu and the branch ------------------------------------------------------


def test_stieltjes_stays_on_the_upper_branch():
    nu = LimitingSpectrum(POPULATIONS["two_level"], 0.8)
    re, im = np.meshgrid(np.linspace(-5.0, 40.0, 46), np.geomspace(1e-6, 10.0, 8))
    z = re + 1j * im
    s = nu.stieltjes(z)
    assert np.all(s.imag > 0.0)
    np.testing.assert_allclose(nu.stieltjes(z.conj()), s.conj())


@pytest.mark.parametrize("delta", [1.0, 1.5, 4.0])
def test_zero_side_diverges_for_delta_at_least_one(delta):
    nu = LimitingSpectrum(POPULATIONS["two_level"], delta)
    s, ds = nu.stieltjes_left(0.0)
    assert s[0] == math.inf and ds[0] == math.inf
    assert nu.moment(-1) == math.inf and nu.moment(-2) == math.inf
    assert nu.atom_at_zero == pytest.approx(max(0.0, 1.0 - 1.0 / delta))


def test_singular_covariance_has_an_atom_below_delta_one():
    nu = LimitingSpectrum(np.array([0.0, 1.0, 2.0, 3.0]), 0.5)
    assert nu.atom_at_zero == pytest.approx(0.25)
    assert nu.moment(-1) == math.inf
    assert float(nu.cdf(0.0)) == pytest.approx(0.25)


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_cdf_is_a_distribution_function(delta):
    nu = LimitingSpectrum(POPULATIONS["two_level"], delta)
    x = np.linspace(-1.0, 2.0 * nu.support_bounds[1], 500)
    f = nu.cdf(x)
    assert np.all(np.diff(f) >= 0.0)
    assert float(nu.cdf(-1e-12)) == 0.0
    assert float(nu.cdf(0.0)) == pytest.approx(nu.atom_at_zero)
    assert f[-1] == pytest.approx(1.0, abs=1e-3)


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        LimitingSpectrum(np.array([1.0, -1.0]), 0.5)
    with pytest.raises(ValueError, match="delta"):
        LimitingSpectrum(np.ones(3), 0.0)
    with pytest.raises(ValueError, match="one-sided"):
        LimitingSpectrum(np.ones(3), 0.5).stieltjes(0.0)
    with pytest.raises(ValueError, match="choose one of"):
        LimitingSpectrum(np.ones(3), 0.5).moment(3)
