"""Measure and classify where each network stopped.

The pitfalls this module guards against (see the design notes): global
points are recognised by their loss, never by ``lambda_min``; the
eigenvalue tolerance grows with the gradient norm so that the curvature the
ReLU rescaling directions carry near a not-quite-critical point cannot turn
a minimum into a "saddle"; and every point records its near-kink count,
because at a kink the autograd Hessian is only one-sided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from harness.spec import Classification


@dataclass(frozen=True)
class Spectrum:
    lambda_min: float
    lambda_max: float
    index: float
    nullity: float
    min_abs_nonzero: float
    gram_lambda_min: float
    method: str
    eigenvalues: np.ndarray | None


NOT_MEASURED = Spectrum(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, "none", None)


def eigenvalue_tolerance(grad_norm: float, tol: Classification) -> float:
    """The tolerance below which a negative eigenvalue is not trusted as a descent direction."""
    return max(tol.eig_tol, tol.eig_tol_grad_factor * grad_norm)


def measure_spectrum(curvature, eig_tol: float, dense_limit: int) -> Spectrum:
    """Spectrum summaries of the Hessian at one point: dense, or Lanczos when too large.

    ``curvature`` is any object with ``size``, ``dense()``, ``matvec(v)`` and
    ``gram_lambda_min()`` (see :class:`harness.hessian.EmpiricalCurvature`).
    """
    gram_min = curvature.gram_lambda_min()
    if curvature.size <= dense_limit:
        eig = torch.linalg.eigvalsh(curvature.dense()).numpy()
        nonzero = np.abs(eig[np.abs(eig) > eig_tol])
        return Spectrum(
            lambda_min=float(eig[0]),
            lambda_max=float(eig[-1]),
            index=float(np.sum(eig < -eig_tol)),
            nullity=float(np.sum(np.abs(eig) <= eig_tol)),
            min_abs_nonzero=float(nonzero.min()) if nonzero.size else math.nan,
            gram_lambda_min=gram_min,
            method="dense",
            eigenvalues=eig,
        )

    lo, hi, converged = _lanczos_extremes(curvature)
    method = "lanczos" if converged else "lanczos-unconverged"
    return Spectrum(lo, hi, math.nan, math.nan, math.nan, gram_min, method, None)


#: Lanczos settings: a wider Krylov space converges in far fewer restarts on
#: Hessians whose spectrum clusters at zero; the cap bounds pathological cases
_LANCZOS_NCV = 40
_LANCZOS_MAXITER = 3000


def _largest(operator: LinearOperator) -> tuple[float, bool]:
    """Largest eigenvalue, and whether ARPACK converged (else its best estimate)."""
    ncv = min(_LANCZOS_NCV, operator.shape[0] - 1)
    try:
        values = eigsh(operator, k=1, which="LA", tol=1e-10, ncv=ncv, maxiter=_LANCZOS_MAXITER,
                       return_eigenvectors=False)
        return float(values[0]), True
    except ArpackNoConvergence as exc:
        partial = exc.eigenvalues
        return (float(partial[0]) if len(partial) else math.nan), False


def _lanczos_extremes(curvature) -> tuple[float, float, bool]:
    size = curvature.size

    def matvec(v: np.ndarray) -> np.ndarray:
        vt = torch.as_tensor(np.ascontiguousarray(v).reshape(-1), dtype=torch.float64)
        return curvature.matvec(vt).numpy()

    top, top_ok = _largest(LinearOperator((size, size), matvec=matvec, dtype=np.float64))

    # the smallest eigenvalue is the largest of (top I - H): far better conditioned for Lanczos
    shifted = LinearOperator((size, size), matvec=lambda v: top * v.reshape(-1) - matvec(v), dtype=np.float64)
    flipped, flipped_ok = _largest(shifted)
    return top - flipped, top, top_ok and flipped_ok


def classify(
    loss: float,
    grad_norm: float,
    lambda_min: float,
    eig_tol_used: float,
    tol: Classification,
    initial_loss: float = math.inf,
) -> str:
    """The end-state class; a loss that grew by ``divergence_factor`` counts as blown up."""
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        return "diverged"
    if loss > tol.divergence_factor * initial_loss:
        return "diverged"
    if loss <= tol.loss_tol:
        return "global"
    if grad_norm <= tol.grad_tol:
        return "saddle" if lambda_min < -eig_tol_used else "spurious_min"
    return "unconverged"


def relative_loss_decrease(trace_steps: torch.Tensor, trace_loss: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Per model, ``(L(0.9 T) - L(T)) / L(0.9 T)`` with ``T`` its own step count.

    A run whose loss was still falling when the budget ran out has a large
    value here; its final loss measures training speed, not the landscape.
    """
    final = trace_loss[-1]
    target = (0.9 * steps.to(torch.float64)).to(trace_steps.dtype)
    earlier_idx = torch.searchsorted(trace_steps, target).clamp(max=trace_steps.numel() - 1)
    earlier = trace_loss[earlier_idx, torch.arange(final.numel())]
    return ((earlier - final) / earlier.abs().clamp_min(1e-300)).to(torch.float64)
