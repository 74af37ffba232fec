"""Built-in gamma* predictors: the paper's formulas and two naive baselines.

Each formula is implemented as the paper writes it, even where the formulas
disagree with each other (for ``Sigma = I`` the spectral ones do not reduce
to ``4/(2 + 3 delta)``).  A predictor returns ``Prediction(None, reason)``
when an input it needs is missing or invalid.

When ``nu`` has an atom at 0 or a non-integrable edge there (``delta >= 1``,
or a singular ``Sigma``), ``s_nu(0-)`` is ``+inf``.  The spectral formulas
then evaluate, in the extended reals, to ``gamma* = 1/inf = 0`` (and the
infimum of Definition 4.1 is 0 because ``Gamma(gamma, 0-) = +inf`` for every
``gamma > 0``).  They return that literal 0.0, with the reason: it is what
the formulas predict ("any width is supercritical"), and a measurement can
refute it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
from scipy import optimize

from harness import Prediction, PredictionContext, Predictor, hookimpl
from harness.spectral import LimitingSpectrum

#: the activation the paper derives its formulas for; the others are noted
_RELU = "relu"
_ISOTROPY_RTOL = 1e-12
_ROOT_XTOL = 1e-14
_MAX_BRACKET_DOUBLINGS = 200


# -- shared checks and notes ---------------------------------------------------------


def _is_positive_number(value: float) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value) and value > 0.0


def _bad_delta(ctx: PredictionContext) -> Prediction | None:
    if _is_positive_number(ctx.delta):
        return None
    return Prediction(None, f"delta = d/n must be a positive number, got {ctx.delta!r}")


def _condition_number(spectrum: np.ndarray) -> float:
    smallest, largest = float(spectrum.min()), float(spectrum.max())
    return math.inf if smallest == 0.0 else largest / smallest


def _valid_spectrum(ctx: PredictionContext) -> tuple[np.ndarray | None, str]:
    """The population spectrum as an array, or ``None`` and why it cannot be used."""
    if ctx.spectrum is None:
        return None, "the data model does not report its population covariance spectrum"
    spectrum = np.asarray(ctx.spectrum, dtype=float).ravel()
    if spectrum.size == 0 or not np.all(np.isfinite(spectrum)) or spectrum.min() < 0.0 or spectrum.max() <= 0.0:
        return None, "the population spectrum is not a covariance spectrum (empty, non-finite, negative or all zero)"
    return spectrum, ""


def _relu_note(ctx: PredictionContext) -> str:
    if ctx.activation == _RELU:
        return ""
    return f"derived for ReLU; applied to {ctx.activation} unchanged"


def _identity_note(ctx: PredictionContext) -> str:
    """Why ``Sigma = I`` may not hold, or ``""`` when it does."""
    if ctx.spectrum is None:
        return "assumes Sigma = I; the data model does not report its spectrum"
    spectrum, problem = _valid_spectrum(ctx)
    if spectrum is None:
        return f"assumes Sigma = I; {problem}"
    if np.allclose(spectrum, 1.0, rtol=_ISOTROPY_RTOL, atol=0.0):
        return ""
    condition = _condition_number(spectrum)
    if condition == 1.0:
        return f"assumes Sigma = I; here Sigma = {spectrum[0]:.4g} I"
    return f"assumes Sigma = I; here the condition number is {condition:.4g}"


def _join(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


# -- the spectral measure nu -----------------------------------------------------------


def _limiting_spectrum(ctx: PredictionContext) -> tuple[LimitingSpectrum | None, str]:
    spectrum, problem = _valid_spectrum(ctx)
    if spectrum is None:
        return None, problem
    return LimitingSpectrum(spectrum, ctx.delta), ""


def _divergence(nu: LimitingSpectrum) -> str:
    """Why ``s_nu(0-)`` and ``Int 1/lambda dnu`` are infinite."""
    if nu.atom_at_zero > 0.0:
        return f"s_nu(0-) = +inf (nu has an atom of mass {nu.atom_at_zero:.4g} at 0)"
    return "s_nu(0-) = +inf (at delta = 1 the density of nu grows like lambda^-1/2 at 0)"


def _spectral_prediction(
    ctx: PredictionContext, solve: Callable[[LimitingSpectrum], Prediction], divergent: str
) -> Prediction:
    """Shared checks of the three C4 formulas; ``solve`` runs only when ``nu`` has no mass at 0.

    Where ``s_nu(0-)`` diverges every C4 formula gives the literal 0, said
    with ``divergent`` as the reason.
    """
    bad = _bad_delta(ctx)
    if bad is not None:
        return bad
    nu, problem = _limiting_spectrum(ctx)
    if nu is None:
        return Prediction(None, problem)

    note = _relu_note(ctx)
    if nu.zero_is_singular:
        return Prediction(0.0, _join(f"{_divergence(nu)}: {divergent}, so gamma* = 0", note))
    found = solve(nu)
    return Prediction(found.value, _join(found.reason, note))


def _inverse_bracket(bracket: Callable[[LimitingSpectrum], float]) -> Callable[[LimitingSpectrum], Prediction]:
    return lambda nu: Prediction(1.0 / bracket(nu))


# -- the paper's formulas ----------------------------------------------------------------


def predict_isotropic(ctx: PredictionContext) -> Prediction:
    """Eq. (12): a closed form in delta alone, reported for any data with a note."""
    bad = _bad_delta(ctx)
    if bad is not None:
        return bad
    return Prediction(4.0 / (2.0 + 3.0 * ctx.delta), _join(_identity_note(ctx), _relu_note(ctx)))


def predict_general_activation(ctx: PredictionContext) -> Prediction:
    """Eq. (20): the isotropic formula with ReLU's 1/2 replaced by kappa(sigma)."""
    bad = _bad_delta(ctx)
    if bad is not None:
        return bad
    if not _is_positive_number(ctx.kappa):
        return Prediction(
            None,
            f"kappa = E[sigma'(z)^2] = {ctx.kappa!r} is not positive: Eq. (20) would need infinitely many neurons",
        )
    return Prediction(2.0 / (ctx.kappa * (2.0 + 3.0 * ctx.delta)), _identity_note(ctx))


def predict_spectral_eq11(ctx: PredictionContext) -> Prediction:
    """Eq. (11): ``[s_nu(0-)/2 + (3/4) Int 1/lambda dnu]^-1``."""

    def bracket(nu: LimitingSpectrum) -> float:
        s_left = float(nu.stieltjes_left(0.0)[0][0])
        return 0.5 * s_left + 0.75 * nu.moment(-1)

    return _spectral_prediction(
        ctx, _inverse_bracket(bracket), "the bracket of Eq. (11) is infinite (no width constraint)"
    )


def predict_spectral_sec51(ctx: PredictionContext) -> Prediction:
    """End of Sec. 5.1: ``[s_nu(0-)/2 + (1/4) Int lambda^-2 dnu * Int lambda dnu]^-1``."""

    def bracket(nu: LimitingSpectrum) -> float:
        s_left = float(nu.stieltjes_left(0.0)[0][0])
        return 0.5 * s_left + 0.25 * nu.moment(-2) * nu.moment(1)

    return _spectral_prediction(
        ctx, _inverse_bracket(bracket), "the bracket of Sec. 5.1 is infinite (no width constraint)"
    )


def gated_spectral_function(nu: LimitingSpectrum, gamma: float, z: float = 0.0) -> float:
    """Eq. (9), ``Gamma(gamma, z) = gamma s(z) + (gamma/2) Int lambda/(lambda - z)^2 dnu - 1``, real ``z <= 0``.

    ``z = 0`` means the limit ``0-``.  ``Int lambda/(lambda - z)^2 dnu``
    equals ``s(z) + z s'(z)``.
    """
    s, ds = nu.stieltjes_left(z)
    s, ds = float(s[0]), float(ds[0])
    if math.isinf(s):
        return math.inf
    weighted = s if z == 0.0 else s + z * ds
    return gamma * s + 0.5 * gamma * weighted - 1.0


def predict_gated_root(ctx: PredictionContext) -> Prediction:
    """Definition 4.1, Eq. (10): ``inf{gamma > 0 : Gamma(gamma, 0-) > 0}``, found as a root.

    ``Gamma(gamma, 0-) + 1`` is ``gamma`` times a positive constant, so the
    infimum is the one root of ``Gamma(., 0-)``; it is bracketed by doubling
    and solved with Brent's method rather than read off a closed form.
    """
    return _spectral_prediction(ctx, _gated_root, "Gamma(gamma, 0-) = +inf for every gamma > 0")


def _gated_root(nu: LimitingSpectrum) -> Prediction:
    def gamma_at_zero(gamma: float) -> float:
        return gated_spectral_function(nu, gamma)

    upper = 1.0
    for _ in range(_MAX_BRACKET_DOUBLINGS):
        if gamma_at_zero(upper) > 0.0:
            break
        upper *= 2.0
    else:
        return Prediction(None, f"Gamma(gamma, 0-) stays <= 0 up to gamma = {upper:.3g}: no finite gamma*")
    root = optimize.brentq(gamma_at_zero, 0.0, upper, xtol=_ROOT_XTOL, rtol=4 * np.finfo(float).eps)
    return Prediction(float(root))


def _anisotropic_inputs(ctx: PredictionContext) -> tuple[float | None, Prediction | None]:
    bad = _bad_delta(ctx)
    if bad is not None:
        return None, bad
    spectrum, problem = _valid_spectrum(ctx)
    if spectrum is None:
        return None, Prediction(None, problem)
    return _condition_number(spectrum), None


def predict_anisotropic_lower(ctx: PredictionContext) -> Prediction:
    """Cor. 8.1 lower bound ``4/(2 + 3 delta kappa_Sigma)``."""
    condition, refusal = _anisotropic_inputs(ctx)
    if refusal is not None:
        return refusal
    if math.isinf(condition):
        return Prediction(
            0.0, _join("singular covariance: kappa_Sigma = inf and the lower bound is 0", _relu_note(ctx))
        )
    return Prediction(
        4.0 / (2.0 + 3.0 * ctx.delta * condition), _join(f"kappa_Sigma = {condition:.4g}", _relu_note(ctx))
    )


def predict_anisotropic_upper(ctx: PredictionContext) -> Prediction:
    """Cor. 8.1 upper bound ``4 kappa_Sigma/(2 + 3 delta)``."""
    condition, refusal = _anisotropic_inputs(ctx)
    if refusal is not None:
        return refusal
    if math.isinf(condition):
        return Prediction(None, "singular covariance: kappa_Sigma = inf, so Cor. 8.1 gives no upper bound")
    return Prediction(
        4.0 * condition / (2.0 + 3.0 * ctx.delta), _join(f"kappa_Sigma = {condition:.4g}", _relu_note(ctx))
    )


# -- naive baselines -------------------------------------------------------------------------


def predict_parameter_count(ctx: PredictionContext) -> Prediction:
    """Interpolation becomes possible once ``p = m (d + 1) >= n``."""
    if not (isinstance(ctx.d, numbers.Integral) and ctx.d >= 1):
        return Prediction(None, f"the input dimension d must be a positive integer, got {ctx.d!r}")
    return Prediction(1.0 / (ctx.d + 1), f"m (d + 1) >= n with d = {ctx.d}")


def predict_teacher_width(ctx: PredictionContext) -> Prediction:
    """The student can represent the teacher once ``m >= m* = gamma_teacher n``."""
    if not _is_positive_number(ctx.gamma_teacher):
        return Prediction(None, f"gamma_teacher must be a positive number, got {ctx.gamma_teacher!r}")
    return Prediction(float(ctx.gamma_teacher), "m >= m* = gamma_teacher n")


@hookimpl
def harness_predictors() -> list[Predictor]:
    return [
        Predictor(
            "isotropic",
            "C2: 4/(2 + 3 delta), ReLU and Sigma = I",
            predict_isotropic,
            source="Eq. (12), Thm 4.2, Prop. 6.1",
        ),
        Predictor(
            "general_activation",
            "C3: 2/(kappa (2 + 3 delta)), any activation, Sigma = I",
            predict_general_activation,
            source="Eq. (20), Sec. 8.4",
        ),
        Predictor(
            "spectral_eq11",
            "C4: [s_nu(0-)/2 + (3/4) Int 1/lambda dnu]^-1, nu = MP(delta) boxtimes mu_Sigma",
            predict_spectral_eq11,
            source="Eq. (11), Thm 4.2",
        ),
        Predictor(
            "spectral_sec51",
            "C4: [s_nu(0-)/2 + (1/4) Int lambda^-2 dnu Int lambda dnu]^-1",
            predict_spectral_sec51,
            source="Sec. 5.1, end of Step 2",
        ),
        Predictor(
            "gated_root",
            "C4: inf{gamma > 0 : Gamma(gamma, 0-) > 0}, the gated spectral function's root",
            predict_gated_root,
            source="Def. 4.1, Eqs. (9)-(10)",
        ),
        Predictor(
            "anisotropic_lower",
            "C5: lower bound 4/(2 + 3 delta kappa_Sigma), kappa_Sigma the condition number",
            predict_anisotropic_lower,
            source="Cor. 8.1",
        ),
        Predictor(
            "anisotropic_upper",
            "C5: upper bound 4 kappa_Sigma/(2 + 3 delta), kappa_Sigma the condition number",
            predict_anisotropic_upper,
            source="Cor. 8.1",
        ),
        Predictor(
            "parameter_count",
            "baseline: 1/(d + 1), where m (d + 1) parameters can interpolate n points",
            predict_parameter_count,
            source="baseline, not in the paper",
        ),
        Predictor(
            "teacher_width",
            "baseline: gamma_teacher, where the student can represent the teacher",
            predict_teacher_width,
            source="baseline, not in the paper",
        ),
    ]
