"""The population loss of two-layer ReLU networks under Gaussian inputs, in closed form.

For ``x ~ N(0, I_d)`` the degree-1 arc-cosine kernel gives

    K(u, v) = E[relu(u.x) relu(v.x)] = |u||v| (sin t + (pi - t) cos t) / (2 pi),

``t`` the angle between ``u`` and ``v``, so the loss
``L = (1/2) E[(f(x) - f*(x))^2]`` of a student
``f(x) = s sum_j a_j relu(w_j.x)`` against a teacher
``f*(x) = s* sum_i b_i relu(v_i.x)`` is a finite sum over pairs of neurons.
Stacking ``z = (w_1..w_m, v_1..v_k)`` with weights ``c = (s a, -s* b)``,
``L = (1/2) sum_pq c_p c_q K(z_p, z_q)``, and with ``G(u, v) = grad_u K(u, v)
= (|v| sin t u/|u| + (pi - t) v) / (2 pi)`` the gradient is
``grad_{w_j} L = s a_j sum_q c_q G(w_j, z_q)`` and
``grad_{a_j} L = s sum_q c_q K(w_j, z_q)``.

Where the formulas are degenerate, and what is returned there:

- ``t = 0`` or ``t = pi`` (parallel or opposite neurons).  As a function of
  ``rho = cos t`` the kernel has an unbounded second derivative at
  ``rho = +-1``, but ``grad rho`` vanishes there like ``sin t``: in the
  parameters the Hessian is continuous at ``t = 0`` and ``t = pi`` (only
  third derivatives jump).  Its formula holds terms ``r r^T / sin t`` with
  ``|r| = sin t``; they are computed as ``r r^T / |r|``, bounded by ``|r|``
  whatever the rounding, and returned as their limit 0 when ``r = 0``.
  Angles come from ``2 atan2(|u^ - v^|, |u^ + v^|)``, exact to rounding near
  0 and pi where ``acos`` of a dot product loses half the digits.
- ``|w_j| = 0`` (a dead neuron).  Near it ``L`` changes to first order like
  ``|w_j|`` times a function of ``w_j``'s direction: it is not differentiable.  Returned: a zero gradient for ``w_j`` (what
  ``relu'(0) = 0`` gives an empirical risk), zero for every Hessian term
  that grows like ``1 / |w_j|`` or depends on ``w_j``'s direction, and the
  self term ``s^2 a_j^2 I / 2`` (its limit from every direction).

Precision: the loss is a difference of ``O(k^2)`` terms of order one, so
float32 resolves it only to about ``k^2 * 1e-7``; train in float64.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from harness.errors import HarnessError
from harness.network import TwoLayerBatch

log = logging.getLogger(__name__)

TWO_PI = 2.0 * math.pi

#: cdist without the matrix-product shortcut, whose cancellation would blur small angles
_DIRECT = "donot_use_mm_for_euclid_dist"


@dataclass(frozen=True)
class PairGeometry:
    """Norms, unit vectors and angles of every pair (row of ``u``, row of ``v``).

    Rows of zero norm have zero unit vectors and count as dead.  A pair with
    a dead row gets placeholder angles; every use multiplies them by the dead
    row's norm or masks them out.
    """

    norm_u: torch.Tensor  # (..., M)
    norm_v: torch.Tensor  # (..., N)
    unit_u: torch.Tensor  # (..., M, d)
    unit_v: torch.Tensor  # (..., N, d)
    angle: torch.Tensor  # (..., M, N)
    sin: torch.Tensor
    cos: torch.Tensor

    @property
    def alive_u(self) -> torch.Tensor:
        return self.norm_u > 0

    @property
    def alive_v(self) -> torch.Tensor:
        return self.norm_v > 0


def _unit_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    tiny = torch.finfo(x.dtype).tiny
    norm = torch.linalg.vector_norm(x, dim=-1)
    alive = (norm > tiny).to(x.dtype)
    return norm * alive, x / norm.clamp_min(tiny)[..., None] * alive[..., None]


def pair_geometry(u: torch.Tensor, v: torch.Tensor) -> PairGeometry:
    """Angles from ``p = |u^ - v^|`` and ``q = |u^ + v^|``: ``t = 2 atan2(p, q)``.

    With ``p^2 + q^2 = 4`` this gives ``sin t = p q / 2`` and
    ``cos t = (q^2 - p^2) / 4`` without further transcendental calls, and
    stays exact to rounding near 0 and pi.
    """
    norm_u, unit_u = _unit_rows(u)
    norm_v, unit_v = _unit_rows(v)
    apart = torch.cdist(unit_u, unit_v, compute_mode=_DIRECT)
    together = torch.cdist(unit_u, -unit_v, compute_mode=_DIRECT)
    angle = 2.0 * torch.atan2(apart, together)
    sin = 0.5 * apart * together
    cos = 0.25 * (together - apart) * (together + apart)
    return PairGeometry(norm_u, norm_v, unit_u, unit_v, angle, sin, cos)


def arccos_kernel(geo: PairGeometry) -> torch.Tensor:
    """``E[relu(u_p.x) relu(v_q.x)]`` for every pair, ``(..., M, N)``."""
    shape = (geo.sin + (math.pi - geo.angle) * geo.cos) / TWO_PI
    return geo.norm_u[..., :, None] * geo.norm_v[..., None, :] * shape


def kernel_gradients(geo: PairGeometry, v: torch.Tensor) -> torch.Tensor:
    """``G(u_p, v_q) = grad_u K(u_p, v_q)`` for every pair, ``(..., M, N, d)``; zero for a dead ``u_p``."""
    along_u = (geo.norm_v[..., None, :] * geo.sin)[..., None] * geo.unit_u[..., :, None, :]
    along_v = (math.pi - geo.angle)[..., None] * v[..., None, :, :]
    return (along_u + along_v) / TWO_PI * geo.alive_u[..., :, None, None]


def _stack(w: torch.Tensor, alpha: torch.Tensor, teacher: torch.Tensor, beta: torch.Tensor):
    """All neurons ``z = (w, v)`` and their signed output weights ``c = (alpha, -beta)``."""
    return torch.cat([w, teacher], dim=-2), torch.cat([alpha, -beta], dim=-1)


def teacher_energy(teacher: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``E[f*(x)^2]`` per model: the loss of a student with zero output."""
    k = arccos_kernel(pair_geometry(teacher, teacher))
    return torch.einsum("...p,...pq,...q->...", beta, k, beta)


def risk_and_gradients(
    w: torch.Tensor, alpha: torch.Tensor, teacher: torch.Tensor, beta: torch.Tensor, energy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss ``(B,)``, gradient over ``W`` ``(B, M, d)`` and ``E[relu(w_j.x) r(x)]`` ``(B, M)``.

    ``alpha = s a`` and ``beta = s* b`` are the effective output weights,
    ``energy`` is :func:`teacher_energy`, ``r = f - f*`` the residual.  The
    last output is the gradient over ``a`` divided by ``s``.
    """
    z, c = _stack(w, alpha, teacher, beta)
    m = w.shape[-2]
    geo = pair_geometry(w, z)
    k = arccos_kernel(geo)
    correlation = (k @ c[..., None])[..., 0]

    # E[r^2] = E[f r] - E[f f*] + E[f*^2]
    student_teacher = (alpha * (k[..., m:] @ beta[..., None])[..., 0]).sum(dim=-1)
    # rounding can push a zero loss slightly below 0; the true loss never is
    loss = (0.5 * ((alpha * correlation).sum(dim=-1) - student_teacher + energy)).clamp_min(0.0)

    spread = geo.sin @ (c * geo.norm_v)[..., None]
    pull = ((math.pi - geo.angle) * c[..., None, :]) @ z
    direction = (spread * geo.unit_u + pull) / TWO_PI
    grad_w = direction * (alpha * geo.alive_u)[..., None]
    return loss, grad_w, correlation


def _orthogonal_parts(geo: PairGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """``r_pq = v^_q - cos t_pq u^_p`` (``|r| = sin t``) and ``|r_pq|``, for every pair."""
    r = geo.unit_v[None, :, :] - geo.cos[..., None] * geo.unit_u[:, None, :]
    return r, torch.linalg.vector_norm(r, dim=-1)


def _over(x: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """``x / norm``, and 0 where ``norm`` is 0: the values the module notes give at t = 0, pi and |w| = 0."""
    return torch.where(norm > 0, x / norm.clamp_min(torch.finfo(norm.dtype).tiny), 0.0)


def _self_curvature(geo: PairGeometry, alpha: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``alpha_j sum_q c_q H_uu(w_j, z_q)`` per neuron, ``(m, d, d)``: the residual bending ``w_j``'s kink."""
    r, r_norm = _orthogonal_parts(geo)
    weight = c * geo.norm_v
    spread = (weight * geo.sin).sum(dim=1)
    projector = torch.eye(r.shape[-1], dtype=r.dtype) - geo.unit_u[:, :, None] * geo.unit_u[:, None, :]
    bend = torch.einsum("jq,jqk,jql->jkl", _over(weight.expand_as(r_norm), r_norm), r, r)
    curvature = _over(spread[:, None, None] * projector + bend, TWO_PI * geo.norm_u[:, None, None])
    return alpha[:, None, None] * curvature


def _pair_curvature(geo: PairGeometry, alpha: torch.Tensor) -> torch.Tensor:
    """``alpha_j alpha_l H_uv(w_j, w_l)`` for every pair of student neurons, ``(m, m, d, d)``.

    A dead neuron couples to nothing but itself, where ``H_uv(u, u) = I / 2``.
    """
    m = alpha.shape[0]
    t, sin = geo.angle[:, :m], geo.sin[:, :m]
    r, r_norm = (x[:, :m] for x in _orthogonal_parts(geo))
    twist = _over(torch.einsum("jlk,ljn->jlkn", r, r), torch.sqrt(r_norm * r_norm.T)[..., None, None])
    aligned = geo.unit_u[:, None, :, None] * geo.unit_u[None, :, None, :]
    eye = torch.eye(r.shape[-1], dtype=r.dtype)
    h_uv = ((math.pi - t)[..., None, None] * eye + sin[..., None, None] * aligned + twist) / TWO_PI

    coupled = (geo.alive_u[:, None] & geo.alive_u[None, :]) | torch.eye(m, dtype=torch.bool)
    weights = (alpha[:, None] * alpha[None, :])[..., None, None]
    return torch.where(coupled[..., None, None], weights * h_uv, 0.0)


def _output_weight_blocks(
    geo: PairGeometry, z: torch.Tensor, alpha: torch.Tensor, c: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(W, a)`` block ``(m d, m)`` and the ``(a, a)`` block ``(m, m)``."""
    m, d = geo.unit_u.shape
    g = kernel_gradients(geo, z)
    h_wa = scale * alpha[:, None, None] * g[:, :m, :]
    idx = torch.arange(m)
    h_wa[idx, idx] += scale * torch.einsum("jqd,q->jd", g, c)
    h_aa = scale**2 * arccos_kernel(geo)[:, :m]
    return h_wa.permute(0, 2, 1).reshape(m * d, m), h_aa


def population_hessian(
    w: torch.Tensor,
    a: torch.Tensor,
    teacher: torch.Tensor,
    student_scale: float,
    teacher_scale: float,
    with_output_weights: bool,
) -> torch.Tensor:
    """Dense Hessian of one model: over ``W`` (row-major), then ``a`` when it trains.

    Blocks, with ``alpha = s a`` and ``H_uu``, ``H_uv`` the second
    derivatives of ``K``:
    ``(w_j, w_l) = alpha_j alpha_l H_uv(w_j, w_l) + [j = l] alpha_j sum_q c_q H_uu(w_j, z_q)``,
    ``(w_j, a_l) = s (alpha_j G(w_j, w_l) + [j = l] sum_q c_q G(w_j, z_q))``,
    ``(a_j, a_l) = s^2 K(w_j, w_l)``, where
    ``H_uu(u, v) = |v| / (2 pi |u|) (sin t (I - u^ u^T) + r r^T / sin t)`` and
    ``H_uv(u, v) = ((pi - t) I + sin t u^ v^T + r_uv r_vu^T / sin t) / (2 pi)``.
    """
    m, d = w.shape
    alpha = student_scale * a
    beta = torch.full((teacher.shape[0],), teacher_scale, dtype=w.dtype)
    z, c = _stack(w, alpha, teacher, beta)
    geo = pair_geometry(w, z)

    blocks = _pair_curvature(geo, alpha)
    idx = torch.arange(m)
    blocks[idx, idx] += _self_curvature(geo, alpha, c)
    h_ww = blocks.permute(0, 2, 1, 3).reshape(m * d, m * d)
    if not with_output_weights:
        return h_ww

    h_wa, h_aa = _output_weight_blocks(geo, z, alpha, c, student_scale)
    return torch.cat([torch.cat([h_ww, h_wa], dim=1), torch.cat([h_wa.T, h_aa], dim=1)], dim=0)


def smallest_angle(w: torch.Tensor, teacher: torch.Tensor) -> float:
    """The smallest angle between a live student neuron and any other live neuron, in radians."""
    m = w.shape[0]
    z = torch.cat([w, teacher])
    geo = pair_geometry(w, z)
    live = geo.alive_u[:, None] & geo.alive_v[None, :]
    live[:, :m] &= ~torch.eye(m, dtype=torch.bool)
    angles = geo.angle[live]
    return float(angles.min()) if angles.numel() else math.nan


class PopulationCurvature:
    """The population Hessian of one model, as the end-point measurements need it.

    There are no samples, so the Gram matrix ``J J^T / n`` is undefined
    (``nan``) and no sample sits on a kink (0); the smallest angle between
    neurons, where the kernel's formulas degenerate, is logged instead.
    The Hessian is assembled densely: there is no matrix-free product yet,
    so memory grows as ``(m d)^2`` even where Lanczos is used.
    """

    def __init__(self, hessian: torch.Tensor, min_angle: float, label: str) -> None:
        self.hessian = hessian
        self.size = int(hessian.shape[0])
        self.min_angle = min_angle
        self.label = label

    def dense(self) -> torch.Tensor:
        return self.hessian

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.hessian @ v

    def gram_lambda_min(self) -> float:
        return math.nan

    def near_kink_samples(self, tol: float) -> int:
        log.debug(
            "population %s: no samples to count on kinks; smallest angle between neurons %.3e rad",
            self.label,
            self.min_angle,
        )
        return 0


class PopulationObjective:
    """``L = (1/2) E_x[(f(x) - f*(x))^2]``, ``x ~ N(0, I_d)``, exactly, for every model of a batch.

    ``teacher`` ``(B, k, d)`` holds each model's teacher rows; the teacher's
    output weights are all 1.  ``student_scale`` ``(B,)`` and
    ``teacher_scale`` are the output scales ``s`` and ``s*``.  With
    ``fixed_output_weights`` the student's ``a`` is frozen: its gradient is
    zero and the Hessian covers ``W`` only (size ``m d``).
    """

    def __init__(
        self,
        net: TwoLayerBatch,
        teacher: torch.Tensor,
        student_scale: torch.Tensor,
        teacher_scale: float,
        fixed_output_weights: bool,
    ) -> None:
        self.net = net
        self.teacher = teacher
        self.student_scale = student_scale
        self.teacher_scale = teacher_scale
        self.fixed_output_weights = fixed_output_weights
        self.teacher_weights = torch.full_like(teacher[..., 0], teacher_scale)
        self.energy = teacher_energy(teacher, self.teacher_weights)

    @property
    def num_samples(self) -> int:
        raise HarnessError(_NO_SAMPLES)

    def _effective_weights(self, a: torch.Tensor) -> torch.Tensor:
        return torch.where(self.net.mask, a, torch.zeros_like(a)) * self.student_scale[:, None]

    def loss(self, theta: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        return self.loss_and_grad(theta, rows)[0]

    def loss_and_grad(
        self, theta: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if rows is not None:
            raise HarnessError(_NO_SAMPLES)
        w, a = self.net.split(theta)
        alpha = self._effective_weights(a)
        loss, grad_w, correlation = risk_and_gradients(
            w, alpha, self.teacher, self.teacher_weights, self.energy
        )

        if self.fixed_output_weights:
            grad_a = torch.zeros_like(a)
        else:
            grad_a = torch.where(self.net.mask, correlation, 0.0) * self.student_scale[:, None]
        return loss, self.net.join(grad_w, grad_a)

    def _model(self, theta: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = int(self.net.widths[b])
        w, a = self.net.split(theta[b : b + 1].to(torch.float64))
        return w[0, :m].cpu(), a[0, :m].cpu(), self.teacher[b].to("cpu", torch.float64)

    def hessian(self, theta: torch.Tensor, b: int) -> torch.Tensor:
        """Dense float64 Hessian of model ``b``: over ``W``, and ``a`` unless frozen."""
        w, a, teacher = self._model(theta, b)
        scale = float(self.student_scale[b])
        return population_hessian(w, a, teacher, scale, self.teacher_scale, not self.fixed_output_weights)

    def curvature(self, theta: torch.Tensor, b: int) -> PopulationCurvature:
        w, _, teacher = self._model(theta, b)
        return PopulationCurvature(self.hessian(theta, b), smallest_angle(w, teacher), f"model {b}")

    def prepare_initial(self, theta: torch.Tensor) -> torch.Tensor:
        """Output weights start at 1 when they are frozen (the classic setting); otherwise unchanged."""
        if not self.fixed_output_weights:
            return theta
        w, a = self.net.split(theta)
        return self.net.join(w, torch.ones_like(a))

    def select(self, indices: torch.Tensor) -> PopulationObjective:
        """The objective of the models at ``indices`` (repeats allowed)."""
        idx = indices.to(self.teacher.device)
        return PopulationObjective(
            self.net.select(idx),
            self.teacher[idx],
            self.student_scale[idx],
            self.teacher_scale,
            self.fixed_output_weights,
        )

    def to(self, device: torch.device | str, dtype: torch.dtype) -> PopulationObjective:
        if dtype != torch.float64:
            log.warning(
                "population: %s resolves the closed-form loss only to about k^2 * %.0e, far above a "
                "global minimum's; set training.dtype: float64",
                dtype,
                torch.finfo(dtype).eps,
            )
        return PopulationObjective(
            self.net.to(device, dtype),
            self.teacher.to(device, dtype),
            self.student_scale.to(device, dtype),
            self.teacher_scale,
            self.fixed_output_weights,
        )

    def astype(self, dtype: torch.dtype) -> PopulationObjective:
        return self.to(self.teacher.device, dtype)


_NO_SAMPLES = (
    "the population loss is an exact expectation with no samples to draw mini-batches from; "
    "use a full-batch optimizer such as gd or adam"
)
