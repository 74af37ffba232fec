"""Each built-in data model's defining property, checked on draws as the runner makes them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from pydantic import ValidationError

from harness import DataSample, HarnessError
from harness.registry import Registry
from harness.seeding import generator
from harness.spec import load_spec

SPECS = Path(__file__).resolve().parents[1] / "specs" / "claims"
DIGITS_ROWS = 1797
DIGITS_RANK = 61

#: large enough that sample eigenvalues sit within a few percent of the population's
LARGE_N = 40_000
#: relative eigenvalue error allowed at LARGE_N: about 7 standard errors of sqrt(2 / n)
EIGENVALUE_TOL = 0.05


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def draw(registry, name, n, d, seed=0, dtype=torch.float64, **params) -> DataSample:
    model = registry.get("data_model", name)
    drawn = model.sample(n, d, generator("inputs", name, n, d, seed), "cpu", dtype, model.params(**params))
    return drawn if isinstance(drawn, DataSample) else DataSample(drawn)


def spectrum(registry, name, d, **params):
    model = registry.get("data_model", name)
    return model.population_spectrum(d, model.params(**params))


def covariance(x: np.ndarray) -> np.ndarray:
    """Second-moment matrix about the known population mean 0."""
    return x.T @ x / len(x)


# --- population spectra --------------------------------------------------------


@pytest.mark.parametrize("shape", ["geometric", "two-level", "power-law"])
@pytest.mark.parametrize("kappa", [2.0, 10.0, 1000.0])
@pytest.mark.parametrize("d", [2, 7, 50])
def test_spectrum_has_exact_condition_number_and_unit_mean(registry, shape, kappa, d):
    s = spectrum(registry, "anisotropic", d, spectrum=shape, condition_number=kappa)

    assert s.shape == (d,)
    assert s.max() / s.min() == pytest.approx(kappa, rel=1e-13)
    assert s.mean() == pytest.approx(1.0, rel=1e-13)
    assert np.all(np.diff(s) <= 0)


def test_spectrum_shapes_follow_their_names(registry):
    d, kappa = 9, 100.0
    geometric = spectrum(registry, "anisotropic", d, spectrum="geometric", condition_number=kappa)
    two_level = spectrum(registry, "anisotropic", d, spectrum="two-level", condition_number=kappa)
    power_law = spectrum(registry, "anisotropic", d, spectrum="power-law", condition_number=kappa)

    ratios = geometric[1:] / geometric[:-1]
    assert np.allclose(ratios, kappa ** (-1 / (d - 1)))

    assert np.unique(two_level).size == 2
    assert np.sum(two_level == two_level.max()) == d // 2

    slopes = np.diff(np.log(power_law)) / np.diff(np.log(np.arange(1, d + 1)))
    assert np.allclose(slopes, -math.log(kappa) / math.log(d))


@pytest.mark.parametrize("name", ["gaussian", "rademacher", "uniform", "student-t"])
def test_default_spectrum_is_isotropic(registry, name):
    assert np.array_equal(spectrum(registry, name, 5), np.ones(5))


@pytest.mark.parametrize("bad", [0.5, 0.0, -3.0, math.inf, math.nan])
def test_condition_number_below_one_or_not_finite_is_rejected(registry, bad):
    with pytest.raises(ValidationError, match="use 1 for isotropic data"):
        registry.get("data_model", "anisotropic").params(condition_number=bad)


def test_unknown_spectrum_shape_and_unknown_keys_are_rejected(registry):
    params = registry.get("data_model", "anisotropic").params
    with pytest.raises(ValidationError):
        params(spectrum="exponential")
    with pytest.raises(ValidationError):
        params(kappa=10.0)


def test_anisotropy_in_one_dimension_says_what_to_change(registry):
    with pytest.raises(HarnessError, match="condition_number: 1"):
        spectrum(registry, "anisotropic", 1, condition_number=10.0)


# --- sample moments against the declared spectrum ------------------------------

COVARIANCE_CASES = [
    ("anisotropic", {"spectrum": "geometric", "condition_number": 20.0, "rotate": False}),
    ("anisotropic", {"spectrum": "two-level", "condition_number": 20.0, "rotate": True}),
    ("anisotropic", {"spectrum": "power-law", "condition_number": 20.0, "rotate": True}),
    ("rademacher", {"spectrum": "geometric", "condition_number": 20.0, "rotate": True}),
    ("uniform", {"spectrum": "power-law", "condition_number": 20.0, "rotate": True}),
    ("student-t", {"nu": 8.0, "spectrum": "geometric", "condition_number": 20.0, "rotate": True}),
    ("rademacher", {}),
    ("uniform", {}),
    ("student-t", {"nu": 8.0}),
]


@pytest.mark.parametrize(("name", "params"), COVARIANCE_CASES)
def test_sample_covariance_matches_population_spectrum(registry, name, params):
    d = 6
    x = draw(registry, name, LARGE_N, d, **params).x.numpy()
    s = spectrum(registry, name, d, **params)

    sample_eigenvalues = np.linalg.eigvalsh(covariance(x))[::-1]
    assert np.max(np.abs(sample_eigenvalues / s - 1)) < EIGENVALUE_TOL
    assert np.all(np.abs(x.mean(axis=0)) < 5 * math.sqrt(s.max() / LARGE_N))


def test_unrotated_covariance_is_diagonal_and_rotated_is_not(registry):
    params = {"condition_number": 20.0}
    plain = covariance(draw(registry, "anisotropic", LARGE_N, 6, rotate=False, **params).x.numpy())
    turned = covariance(draw(registry, "anisotropic", LARGE_N, 6, rotate=True, **params).x.numpy())
    s = spectrum(registry, "anisotropic", 6, **params)

    assert np.allclose(np.diag(plain), s, rtol=EIGENVALUE_TOL)
    assert np.max(np.abs(plain - np.diag(np.diag(plain)))) < 5 * s.max() / math.sqrt(LARGE_N)
    assert np.max(np.abs(turned - np.diag(np.diag(turned)))) > 0.1


@pytest.mark.parametrize(
    ("name", "params"),
    [("gaussian", {}), ("rademacher", {}), ("uniform", {}), ("student-t", {"nu": 5.0})],
)
def test_isotropic_models_have_mean_zero_and_unit_variance_per_coordinate(registry, name, params):
    x = draw(registry, name, LARGE_N, 5, **params).x.numpy()

    assert np.all(np.abs(x.mean(axis=0)) < 5 / math.sqrt(LARGE_N))
    assert np.allclose(x.var(axis=0), 1.0, atol=0.05)


# --- distribution of the entries -----------------------------------------------


def test_rademacher_entries_are_plus_or_minus_one(registry):
    z = draw(registry, "rademacher", 10_000, 8).x.numpy().ravel()

    assert set(np.unique(z)) == {-1.0, 1.0}
    assert abs(np.mean(z == 1.0) - 0.5) < 5 * 0.5 / math.sqrt(z.size)


def test_uniform_entries_are_bounded_and_uniform(registry):
    z = draw(registry, "uniform", 50_000, 4).x.numpy().ravel()
    bound = math.sqrt(3.0)

    assert np.all(np.abs(z) <= bound)
    assert z.max() > 0.999 * bound and z.min() < -0.999 * bound
    assert scipy.stats.kurtosis(z, fisher=False) == pytest.approx(1.8, abs=0.02)
    assert scipy.stats.kstest(z, "uniform", args=(-bound, 2 * bound)).pvalue > 1e-3


@pytest.mark.parametrize("nu", [3.0, 10.0])
def test_student_t_entries_follow_the_scaled_t_distribution(registry, nu):
    z = draw(registry, "student-t", 50_000, 4, nu=nu).x.numpy().ravel()
    reference = scipy.stats.t(nu, scale=math.sqrt((nu - 2) / nu))

    assert scipy.stats.kstest(z, reference.cdf).pvalue > 1e-3

    # the mass beyond the reference's 0.999 quantile matches, within binomial error
    tail = np.mean(np.abs(z) > reference.ppf(0.9995))
    assert abs(tail - 1e-3) < 5 * math.sqrt(1e-3 / z.size)


def test_student_t_is_heavier_tailed_than_gaussian(registry):
    nu = 10.0
    heavy = draw(registry, "student-t", 50_000, 4, nu=nu).x.numpy().ravel()
    light = draw(registry, "gaussian", 50_000, 4).x.numpy().ravel()

    assert scipy.stats.kurtosis(heavy, fisher=False) == pytest.approx(3 + 6 / (nu - 4), abs=0.3)
    assert scipy.stats.kurtosis(light, fisher=False) == pytest.approx(3.0, abs=0.1)
    assert np.mean(np.abs(heavy) > 4) > 10 * np.mean(np.abs(light) > 4)


@pytest.mark.parametrize("nu", [2.0, 1.5, 0.5])
def test_student_t_with_infinite_variance_needs_the_flag(registry, nu):
    params = registry.get("data_model", "student-t").params
    with pytest.raises(ValidationError, match="allow_infinite_variance: true"):
        params(nu=nu)
    assert params(nu=nu, allow_infinite_variance=True).nu == nu


def test_student_t_rejects_non_positive_degrees_of_freedom(registry):
    with pytest.raises(ValidationError):
        registry.get("data_model", "student-t").params(nu=0.0, allow_infinite_variance=True)


def test_student_t_with_infinite_variance_is_unscaled_and_noted(registry):
    nu = 1.5
    drawn = draw(registry, "student-t", 50_000, 4, nu=nu, allow_infinite_variance=True)
    z = drawn.x.numpy().ravel()

    assert drawn.notes == {"variance": "infinite"}
    assert spectrum(registry, "student-t", 4, nu=nu, allow_infinite_variance=True) is None
    assert scipy.stats.kstest(z, "t", args=(nu,)).pvalue > 1e-3


def test_student_t_with_finite_variance_has_no_notes(registry):
    assert draw(registry, "student-t", 10, 3, nu=3.0).notes == {}


# --- digits --------------------------------------------------------------------


def test_digits_draw_has_the_asked_shape_and_no_repeated_rows(registry):
    x = draw(registry, "digits", 1000, 20).x.numpy()

    assert x.shape == (1000, 20)
    assert len(np.unique(x, axis=0)) == 1000


def test_digits_whole_data_set_has_the_declared_spectrum(registry):
    d = 30
    x = draw(registry, "digits", DIGITS_ROWS, d).x.numpy()
    s = spectrum(registry, "digits", d)

    assert np.allclose(x.mean(axis=0), 0.0, atol=1e-12)
    assert s.mean() == pytest.approx(1.0)
    assert np.all(np.diff(s) <= 0)
    assert np.allclose(np.linalg.eigvalsh(covariance(x))[::-1], s, rtol=1e-10)


def test_digits_whitened_covariance_is_the_identity(registry):
    d = 40
    whole = draw(registry, "digits", DIGITS_ROWS, d, whiten=True).x.numpy()
    part = draw(registry, "digits", 1000, d, whiten=True).x.numpy()

    assert np.array_equal(spectrum(registry, "digits", d, whiten=True), np.ones(d))
    assert np.allclose(covariance(whole), np.eye(d), atol=1e-10)
    assert np.max(np.abs(covariance(part) - np.eye(d))) < 0.25


def test_digits_labels_come_from_the_teacher_unless_asked(registry):
    assert draw(registry, "digits", 50, 10).labels is None


def test_digits_true_labels_are_digits_that_belong_to_their_rows(registry):
    first = draw(registry, "digits", DIGITS_ROWS, 10, seed=0, labels="digits")
    second = draw(registry, "digits", DIGITS_ROWS, 10, seed=1, labels="digits")
    labels = first.labels.numpy()

    assert first.labels.dtype == torch.float64
    assert set(np.unique(labels)) == set(range(10))
    assert np.array_equal(np.bincount(labels.astype(int)), np.bincount(second.labels.numpy().astype(int)))

    # two whole-set draws are two orders of the same rows: each digit's mean image must agree
    for digit in range(10):
        assert np.allclose(
            first.x.numpy()[labels == digit].mean(axis=0),
            second.x.numpy()[second.labels.numpy() == digit].mean(axis=0),
        )


@pytest.mark.parametrize("d", [DIGITS_RANK + 1, 64, 65, 0])
def test_digits_dimension_beyond_the_data_rank_says_the_limit(registry, d):
    with pytest.raises(HarnessError, match=f"1 <= d <= {DIGITS_RANK}"):
        draw(registry, "digits", 10, d)


def test_digits_more_rows_than_the_data_set_says_the_maximum(registry):
    with pytest.raises(HarnessError, match=f"at most {DIGITS_ROWS}"):
        draw(registry, "digits", DIGITS_ROWS + 1, 10)


def test_digits_rejects_unknown_label_source(registry):
    with pytest.raises(ValidationError):
        registry.get("data_model", "digits").params(labels="classes")


# --- determinism and output type -----------------------------------------------

EVERY_MODEL = [
    ("gaussian", {}),
    ("anisotropic", {"rotate": True}),
    ("rademacher", {"condition_number": 5.0, "rotate": True}),
    ("uniform", {}),
    ("student-t", {"nu": 3.0}),
    ("digits", {"whiten": True}),
]


@pytest.mark.parametrize(("name", "params"), EVERY_MODEL)
def test_same_seed_same_draw_and_different_seeds_differ(registry, name, params):
    first = draw(registry, name, 30, 8, seed=0, **params).x
    again = draw(registry, name, 30, 8, seed=0, **params).x
    other = draw(registry, name, 30, 8, seed=1, **params).x

    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize(("name", "params"), EVERY_MODEL)
def test_draw_is_made_in_float64_then_cast(registry, name, params):
    wide = draw(registry, name, 30, 8, **params).x
    narrow = draw(registry, name, 30, 8, dtype=torch.float32, **params).x

    assert narrow.dtype == torch.float32
    assert torch.equal(narrow, wide.to(torch.float32))


# --- claim specs ---------------------------------------------------------------


@pytest.mark.parametrize("spec_file", ["c5-anisotropic.yaml", "c10-data-models.yaml", "c11-whitening.yaml"])
def test_claim_spec_data_models_accept_their_params(registry, spec_file):
    spec = load_spec(SPECS / spec_file)

    for ref in spec.data_models:
        model = registry.get("data_model", ref.name)
        params = model.params(**ref.params)
        for n in spec.grid.n:
            for delta in spec.grid.deltas():
                d = max(1, round(delta * n))
                assert draw(registry, ref.name, n, d, **ref.params).x.shape == (n, d)
                assert model.population_spectrum(d, params) is not None
