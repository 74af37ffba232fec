"""Analytic Hessian of the empirical risk of one two-layer network, in float64.

For ``f(x) = s sum_j a_j sigma(w_j . x)`` with ``s = m^{-1/2}`` and
``L = (1/2n) sum_i r_i^2``, ``r_i = f(x_i) - y_i``:

    H = (1/n) J^T J + (1/n) sum_i r_i Hess f(x_i)

where ``Hess f`` couples only parameters of the same neuron: the ``(w_j, w_j)``
block is ``s a_j sigma''(z_ij) x_i x_i^T`` and the ``(w_j, a_j)`` block is
``s sigma'(z_ij) x_i``.  Parameters are ordered as in
:meth:`harness.network.TwoLayerBatch.real_params`: ``W`` row-major, then ``a``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.activation_math import BoundActivation


@dataclass(frozen=True)
class PointTerms:
    """The per-sample quantities every second-order measurement needs."""

    x: torch.Tensor  # (n, d)
    a: torch.Tensor  # (m,)
    scale: float
    residual: torch.Tensor  # (n,)
    act: torch.Tensor  # sigma(z), (n, m)
    act1: torch.Tensor  # sigma'(z)
    act2: torch.Tensor  # sigma''(z)
    pre: torch.Tensor  # z = x w^T

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


def point_terms(
    activation: BoundActivation, w: torch.Tensor, a: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> PointTerms:
    w, a, x, y = (t.to(torch.float64) for t in (w, a, x, y))
    scale = w.shape[0] ** -0.5
    pre = x @ w.T
    act, act1, act2 = activation.derivatives(pre)
    residual = scale * act @ a - y
    return PointTerms(x, a, scale, residual, act, act1, act2, pre)


def jacobian(t: PointTerms) -> torch.Tensor:
    """``J`` of shape ``(n, m (d + 1))``: rows are ``grad f(x_i)``."""
    jw = t.scale * (t.act1 * t.a)[:, :, None] * t.x[:, None, :]
    ja = t.scale * t.act
    return torch.cat([jw.reshape(t.n, -1), ja], dim=1)


def residual_blocks(t: PointTerms) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(w_j, w_j)`` blocks ``(m, d, d)`` and ``(w_j, a_j)`` blocks ``(m, d)`` of ``(1/n) sum r_i Hess f_i``."""
    weight = t.residual[:, None] * t.scale / t.n
    ww = torch.einsum("ij,ik,il->jkl", weight * t.a * t.act2, t.x, t.x)
    wa = torch.einsum("ij,ik->jk", weight * t.act1, t.x)
    return ww, wa


def hessian(t: PointTerms) -> torch.Tensor:
    """The dense Hessian of ``L`` at one point."""
    m, d = t.act.shape[1], t.x.shape[1]
    jac = jacobian(t)
    h = jac.T @ jac / t.n
    ww, wa = residual_blocks(t)
    md = m * d
    idx = torch.arange(m)

    blocks = h[:md, :md].view(m, d, m, d)
    blocks[idx, :, idx, :] += ww
    h[:md, md:].view(m, d, m)[idx, :, idx] += wa
    h[md:, :md].view(m, m, d)[idx, idx, :] += wa
    return h


def hessian_vector_product(t: PointTerms, jac: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``H v`` without forming ``H``, for Lanczos on large networks."""
    m, d = t.act.shape[1], t.x.shape[1]
    md = m * d
    ww, wa = residual_blocks(t)
    out = jac.T @ (jac @ v) / t.n
    vw, va = v[:md].view(m, d), v[md:]
    out_w = torch.einsum("jkl,jl->jk", ww, vw) + wa * va[:, None]
    out_a = (wa * vw).sum(dim=1)
    return out + torch.cat([out_w.reshape(-1), out_a])


class EmpiricalCurvature:
    """Second-order view of one model on a finite sample, as the end-point measurements need it.

    Any objective can offer the same four members (``size``, ``dense``,
    ``matvec``, ``gram_lambda_min``, ``near_kink_samples``) to be measured
    and classified by the same code.
    """

    def __init__(self, terms: PointTerms, activation: BoundActivation) -> None:
        self.terms = terms
        self.activation = activation
        self.jac = jacobian(terms)
        self.size = int(self.jac.shape[1])

    def dense(self) -> torch.Tensor:
        return hessian(self.terms)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return hessian_vector_product(self.terms, self.jac, v)

    def gram_lambda_min(self) -> float:
        """Smallest eigenvalue of ``J J^T / n``: zero means the features cannot fit every label."""
        return float(torch.linalg.eigvalsh(self.jac @ self.jac.T / self.terms.n)[0])

    def near_kink_samples(self, tol: float) -> int:
        """Samples on some neuron's kink, where the autograd Hessian is only one-sided."""
        return int(self.activation.near_kink(self.terms.pre, tol).any(dim=1).sum())
