"""The limiting spectrum ``nu = MP(delta) boxtimes mu_Sigma`` of ``X^T X / n``.

Rows of ``X`` (``n x d``) are ``N(0, Sigma)`` draws and ``delta = d / n``.
``mu_Sigma`` is the discrete measure with equal weights on the eigenvalues
of ``Sigma``.  The spectral predictors need ``s_nu(0-)`` and the moments of
``nu``; the tests compare ``nu`` with Monte-Carlo eigenvalues, so the density
and distribution function are computed as well.

Everything comes from the Silverstein fixed-point equation, solved
numerically.  Off the real axis the equation is solved for the Stieltjes
transform ``m`` of the companion matrix ``X X^T / n``,

    z = -1/m + delta * Int t / (1 + t m) dmu_Sigma(t),

whose solution is unique among ``m`` with ``Im m > 0`` (Silverstein and Bai,
1995).  On the negative real axis, including ``z = 0-``, the equation for
``s_nu`` itself,

    s = Int dmu_Sigma(t) / (t (1 - delta - delta z s) - z),

is used because it stays regular at ``z = 0`` when ``delta < 1``.  Closed
forms (the isotropic ones, the inverse-Wishart moments) are checked by the
tests, never used here.
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)

#: continuation starts this many times the support's upper bound above the
#: real axis, where ``m = -1/z`` is an accurate first guess
_ETA_START = 10.0
#: each continuation stage divides the distance to the target point by this
_ETA_RATIO = 0.03
#: the density is read at ``x + i * _ETA_DENSITY * upper``; the smoothing it
#: causes is of order 1e-4 at a square-root edge and far less inside
_ETA_DENSITY = 1e-8
_NEWTON_RTOL = 1e-13
#: intermediate continuation stages only need to land in Newton's basin
_STAGE_RTOL = 1e-6
_RESIDUAL_RTOL = 1e-14
_NEWTON_MAX_STEPS = 60
#: Newton steps allowed per continuation stage before the jump is shortened
_STAGE_STEPS = 12
#: a point whose jump ratio must exceed this is given up on (after about a
#: dozen successive shortenings)
_RATIO_GIVE_UP = 0.999
_HALVINGS = 60
#: the solver works on blocks of at most this many (point, eigenvalue) pairs
_BLOCK = 1 << 21
#: quadrature nodes of the distribution function
_CDF_NODES = 1024
#: warn when the integrated density misses the expected mass by more
_MASS_TOL = 1e-3


class LimitingSpectrum:
    """``nu = MP(delta) boxtimes mu_Sigma`` for a discrete population spectrum.

    ``population`` holds the eigenvalues of ``Sigma`` (equal weights, zeros
    allowed for a singular ``Sigma``).  For ``delta >= 1`` or a singular
    ``Sigma``, ``nu`` has an atom at 0 or a non-integrable edge there, and
    ``s_nu(0-)`` and the negative moments are ``math.inf``.
    """

    def __init__(self, population: np.ndarray, delta: float) -> None:
        eigenvalues = np.asarray(population, dtype=float).ravel()
        if eigenvalues.size == 0:
            raise ValueError("the population spectrum is empty; give at least one eigenvalue")
        if not np.all(np.isfinite(eigenvalues)) or eigenvalues.min() < 0.0 or eigenvalues.max() <= 0.0:
            raise ValueError(
                "population eigenvalues must be finite and non-negative, and not all zero "
                "(they are the eigenvalues of a covariance matrix)"
            )
        if not (math.isfinite(delta) and delta > 0.0):
            raise ValueError(f"delta = d/n must be a positive number, got {delta!r}")

        self.delta = float(delta)
        values, counts = np.unique(eigenvalues, return_counts=True)
        self._t = values
        self._w = counts / eigenvalues.size
        self._wt = self._w * values
        self._wtt = self._wt * values
        self._zero_weight = float(self._w[0]) if values[0] == 0.0 else 0.0
        self._cdf_table: tuple[np.ndarray, np.ndarray] | None = None

    # -- the measure ---------------------------------------------------------

    @property
    def atom_at_zero(self) -> float:
        """Mass of ``nu`` at 0: rank of ``X^T X`` is ``min(n, rank Sigma)``."""
        return max(0.0, self._zero_weight, 1.0 - 1.0 / self.delta)

    @property
    def support_bounds(self) -> tuple[float, float]:
        """An interval containing the continuous part of ``nu``.

        The non-zero eigenvalues of ``Sigma^{1/2} Z^T Z Sigma^{1/2} / n`` lie
        between ``t_min (1 - sqrt(r))^2`` and ``t_max (1 + sqrt(r))^2`` in the
        limit, with ``r`` the aspect ratio over the range of ``Sigma``.
        """
        ratio = self.delta * (1.0 - self._zero_weight)
        positive = self._t[self._t > 0.0]
        return float(positive[0] * (1.0 - math.sqrt(ratio)) ** 2), float(positive[-1] * (1.0 + math.sqrt(ratio)) ** 2)

    @property
    def zero_is_singular(self) -> bool:
        """True when ``Int 1/lambda dnu`` diverges: an atom at 0, or ``delta = 1``'s ``lambda^-1/2`` edge."""
        return self.atom_at_zero > 0.0 or self.delta >= 1.0

    # -- Stieltjes transform ---------------------------------------------------

    def stieltjes(self, z: complex | np.ndarray) -> np.ndarray:
        """``s_nu(z) = Int dnu(lambda) / (lambda - z)``.

        Off the real axis directly (``s(conj z) = conj s(z)``); on the
        negative real axis as a real number; at real ``x > 0`` the boundary
        value ``s(x + i0)`` from above.  ``z = 0`` is refused: use
        :meth:`stieltjes_left` for the one-sided limit ``s(0-)``.
        """
        z = np.asarray(z, dtype=complex)
        flat = z.ravel()
        out = np.empty_like(flat)

        real = flat.imag == 0.0
        if np.any(real & (flat.real == 0.0)):
            raise ValueError("s_nu(0) is one-sided; call stieltjes_left(0.0) for s_nu(0-)")
        left = real & (flat.real < 0.0)
        if left.any():
            out[left] = self.stieltjes_left(flat.real[left])[0]

        off_axis = ~left
        if off_axis.any():
            target = flat[off_axis].copy()
            lower = target.imag < 0.0
            target[lower] = target[lower].conj()
            target[target.imag == 0.0] += 1j * _ETA_DENSITY * self.support_bounds[1]
            s = (self._companion(target) + (1.0 - self.delta) / target) / self.delta
            s[lower] = s[lower].conj()
            out[off_axis] = s

        return out.reshape(z.shape)

    def stieltjes_left(self, z: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(s_nu(z), s_nu'(z))`` for real ``z <= 0``; ``z = 0`` means the limit ``0-``.

        ``s'(0-) = Int lambda^-2 dnu``, so this also gives the negative
        moments.  Both are ``inf`` at ``0-`` when :attr:`zero_is_singular`.
        """
        z = np.atleast_1d(np.asarray(z, dtype=float))
        if np.any(z > 0.0):
            raise ValueError("stieltjes_left takes real z <= 0; use stieltjes for other points")
        s = np.empty_like(z)
        ds = np.empty_like(z)

        at_zero = z == 0.0
        if self.zero_is_singular:
            s[at_zero] = math.inf
            ds[at_zero] = math.inf
            todo = ~at_zero
        else:
            todo = np.ones_like(at_zero)

        if todo.any():
            if self.delta < 1.0:
                s[todo], ds[todo] = self._left_from_s_equation(z[todo])
            else:
                s[todo], ds[todo] = self._left_from_companion(z[todo])
        return s, ds

    def _left_from_s_equation(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Newton on ``G(s) = s - Int dmu / D``, ``D = t(1 - c - c z s) - z``, for ``c < 1``, ``z <= 0``.

        For ``s >= 0`` every ``D`` is positive and ``G`` is increasing and
        concave, so Newton from ``s = 0`` climbs monotonically to the root.
        """
        c = self.delta
        s = np.zeros_like(z)
        for _ in range(_NEWTON_MAX_STEPS):
            inv_d = 1.0 / (np.multiply.outer(1.0 - c - c * z * s, self._t) - z[:, None])
            g = s - inv_d @ self._w
            dg = 1.0 - c * z * ((inv_d * inv_d) @ self._wt)
            step = g / dg
            s = s - step
            if np.all(np.abs(step) <= _NEWTON_RTOL * np.abs(s)):
                break
        else:
            log.warning("s_nu on the negative axis did not converge to %.0e (delta=%g)", _NEWTON_RTOL, c)

        # implicit differentiation of s = Int dmu / D(z, s)
        inv_d = 1.0 / (np.multiply.outer(1.0 - c - c * z * s, self._t) - z[:, None])
        sq = inv_d * inv_d
        ds = (sq @ self._w + c * s * (sq @ self._wt)) / (1.0 - c * z * (sq @ self._wt))
        return s, ds

    def _left_from_companion(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Real ``s`` and ``s'`` for ``z < 0`` when ``delta >= 1``, through the companion transform.

        The companion ``m`` is real there; the complex continuation selects
        the right root and a few real Newton steps polish it.
        """
        c = self.delta
        m = self._companion(z + 1j * _ETA_DENSITY * self.support_bounds[1]).real
        for _ in range(_NEWTON_MAX_STEPS):
            f, df = self._companion_residual(m, z)
            step = f / df
            m = m - step
            if np.all(np.abs(step) <= _NEWTON_RTOL * np.abs(m)):
                break
        else:
            log.warning("s_nu on the negative axis did not converge to %.0e (delta=%g)", _NEWTON_RTOL, c)
        _, dz_dm = self._companion_residual(m, z)
        s = (m + (1.0 - c) / z) / c
        ds = (1.0 / dz_dm - (1.0 - c) / z**2) / c
        return s, ds

    # -- companion transform off the axis -----------------------------------------

    def _companion_residual(self, m: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``F(m) = -1/m + c Int t/(1+tm) - z`` and ``F'(m) = dz/dm``."""
        q = 1.0 / (1.0 + np.multiply.outer(m, self._t))
        f = -1.0 / m + self.delta * (q @ self._wt) - z
        df = 1.0 / m**2 - self.delta * ((q * q) @ self._wtt)
        return f, df

    def _companion(self, z: np.ndarray) -> np.ndarray:
        """Companion Stieltjes transform at points with ``Im z > 0``, in memory-bounded blocks."""
        z = np.asarray(z, dtype=complex).ravel()
        m = np.empty_like(z)
        block = max(1, _BLOCK // self._t.size)
        for start in range(0, z.size, block):
            m[start : start + block] = self._companion_block(z[start : start + block])
        return m

    def _companion_block(self, z: np.ndarray) -> np.ndarray:
        """Newton continuation from far above the axis down to ``z``.

        The solution is analytic in ``z``, so it is followed along
        ``z + i * lift`` with the lift shrinking by ``_ETA_RATIO`` per stage.
        Near a spectral edge a long jump can send Newton towards the real
        axis, where ``|F|`` has spurious minima; a point whose stage does not
        converge retries from its last solution with a shorter jump.
        """
        lift = np.full(z.size, _ETA_START * self.support_bounds[1])
        ratio = np.full(z.size, _ETA_RATIO)
        closest = 0.1 * z.imag
        m = -1.0 / (z + 1j * lift)
        active = np.arange(z.size)

        while active.size:
            target = lift[active] * ratio[active]
            target[target < closest[active]] = 0.0
            rtol = np.where(target == 0.0, _NEWTON_RTOL, _STAGE_RTOL)
            solved, converged = self._newton_upper(m[active], z[active] + 1j * target, rtol)

            moved = active[converged]
            m[moved] = solved[converged]
            lift[moved] = target[converged]
            ratio[moved] = np.maximum(ratio[moved] ** 2, _ETA_RATIO)

            stuck = active[~converged]
            ratio[stuck] = np.sqrt(ratio[stuck])
            hopeless = stuck[ratio[stuck] > _RATIO_GIVE_UP]
            if hopeless.size:
                log.warning(
                    "Silverstein equation: %d point(s) near x=%s did not converge (delta=%g); their density may be off",
                    hopeless.size,
                    np.round(z.real[hopeless][:3], 6).tolist(),
                    self.delta,
                )
                lift[hopeless] = 0.0
            active = active[lift[active] > 0.0]
        return m

    def _newton_upper(self, m: np.ndarray, z: np.ndarray, rtol: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A few Newton steps on ``F(m) = 0`` that never leave ``Im m > 0``.

        Returns the iterates and which of them converged; a root found with
        ``Im m > 0`` is the right one, since the solution there is unique.
        """
        m = m.copy()
        converged = np.zeros(m.size, dtype=bool)
        active = np.arange(m.size)
        for _ in range(_STAGE_STEPS):
            current = m[active]
            f, df = self._companion_residual(current, z[active])
            step = f / df
            candidate = current - step
            factor = 1.0
            for _ in range(_HALVINGS):
                outside = ~(candidate.imag > 0.0)
                if not outside.any():
                    break
                factor *= 0.5
                candidate[outside] = current[outside] - factor * step[outside]
            m[active] = candidate

            # at a spectral edge F' vanishes and rounding limits m to about
            # sqrt(eps); a residual at rounding level of its terms also counts
            settled = np.abs(f) <= _RESIDUAL_RTOL * (np.abs(1.0 / current) + np.abs(z[active]))
            done = (np.abs(step) <= rtol[active] * np.abs(candidate)) | settled
            converged[active[done]] = True
            active = active[~done]
            if active.size == 0:
                break
        return m, converged

    # -- density and distribution --------------------------------------------------

    def density(self, x: float | np.ndarray) -> np.ndarray:
        """Density of the continuous part of ``nu`` at real ``x``: ``Im s(x + i0) / pi``.

        The atom at 0 (:attr:`atom_at_zero`) is not included.  The companion
        measure's own atom at 0 leaks a Lorentzian of width ``eta`` into
        ``Im m``; it is subtracted exactly.
        """
        x = np.atleast_1d(np.asarray(x, dtype=float))
        out = np.zeros_like(x)
        positive = x > 0.0
        if not positive.any():
            return out

        eta = _ETA_DENSITY * self.support_bounds[1]
        xp = x[positive]
        m = self._companion(xp + 1j * eta)
        companion_atom = max(0.0, 1.0 - self.delta * (1.0 - self._zero_weight))
        leak = companion_atom * eta / (xp**2 + eta**2)
        out[positive] = np.maximum(m.imag - leak, 0.0) / (math.pi * self.delta)
        return out

    def cdf(self, x: float | np.ndarray) -> np.ndarray:
        """``nu((-inf, x])``, for Kolmogorov distances to empirical spectra.

        The continuous part is integrated once with the midpoint rule in
        ``theta``, ``x = a + (b - a) ((1 - cos theta)/2)^2``: the substitution
        makes square-root edges and ``delta = 1``'s ``x^-1/2`` edge smooth,
        and resolves the narrow peak next to 0 when ``delta`` is near 1.
        """
        if self._cdf_table is None:
            self._cdf_table = self._integrate_density()
        edges, cumulative = self._cdf_table
        x = np.asarray(x, dtype=float)
        continuous = np.interp(x, edges, cumulative, left=0.0, right=cumulative[-1])
        return continuous + np.where(x >= 0.0, self.atom_at_zero, 0.0)

    def _integrate_density(self) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.support_bounds
        theta_edges = np.linspace(0.0, math.pi, _CDF_NODES + 1)
        theta_mid = 0.5 * (theta_edges[1:] + theta_edges[:-1])
        half_versine = 0.5 * (1.0 - np.cos(theta_mid))
        x_mid = a + (b - a) * half_versine**2
        jacobian = (b - a) * half_versine * np.sin(theta_mid)
        pieces = self.density(x_mid) * jacobian * (math.pi / _CDF_NODES)

        edges = a + (b - a) * (0.5 * (1.0 - np.cos(theta_edges))) ** 2
        cumulative = np.concatenate([[0.0], np.cumsum(pieces)])
        expected = 1.0 - self.atom_at_zero
        if abs(cumulative[-1] - expected) > _MASS_TOL:
            log.warning(
                "integrated density has mass %.6f, expected %.6f (delta=%g)", cumulative[-1], expected, self.delta
            )
        return edges, cumulative

    # -- moments -------------------------------------------------------------------

    def moment(self, k: int) -> float:
        """``Int lambda^k dnu`` for ``k in {-2, -1, 1, 2}``.

        Negative moments are ``s(0-)`` and ``s'(0-)`` from the fixed-point
        equation (``inf`` when :attr:`zero_is_singular`).  Positive moments are
        exact free-probability identities, ``E[t]`` and ``E[t^2] + delta E[t]^2``
        over ``mu_Sigma``; the tests check them against the density and
        Monte-Carlo spectra.
        """
        if k == 1:
            return float(self._wt.sum())
        if k == 2:
            return float(self._wtt.sum() + self.delta * self._wt.sum() ** 2)
        if k in (-1, -2):
            s, ds = self.stieltjes_left(0.0)
            return float(s[0] if k == -1 else ds[0])
        raise ValueError(f"moment k={k} is not available; choose one of -2, -1, 1, 2")
