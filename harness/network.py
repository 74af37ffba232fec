"""Batches of two-layer networks ``f(x) = m^{-1/2} sum_j a_j sigma(w_j . x)``.

``B`` independent networks of different widths share one padded parameter
tensor ``theta`` of shape ``(B, P)`` with ``P = M (d + 1)``, ``M`` the widest:
the first ``M d`` entries are ``W`` (row-major, ``M x d``), the last ``M``
are ``a``.  Padded neurons are masked out of the output, so their gradients
are exactly zero and they never move.
"""

from __future__ import annotations

import torch

from harness.activation_math import BoundActivation
from harness.hessian import EmpiricalCurvature, PointTerms, hessian, point_terms


class TwoLayerBatch:
    def __init__(
        self, widths: torch.Tensor, d: int, activation: BoundActivation, pad_to: int | None = None
    ) -> None:
        self.widths = widths.to(torch.long)
        self.d = d
        self.activation = activation
        self.num_models = int(widths.numel())
        self.max_width = max(int(widths.max()), pad_to or 0)
        self.num_params = self.max_width * (d + 1)
        neuron = torch.arange(self.max_width, device=widths.device)
        self.mask = neuron[None, :] < self.widths[:, None]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> TwoLayerBatch:
        return TwoLayerBatch(self.widths.to(device), self.d, self.activation, self.max_width)

    def select(self, indices: torch.Tensor) -> TwoLayerBatch:
        """The models at ``indices`` (repeats allowed), with the same padding."""
        return TwoLayerBatch(self.widths[indices.to(self.widths.device)], self.d, self.activation, self.max_width)

    def param_mask(self) -> torch.Tensor:
        """``(B, P)``: True on real parameters, False on padding."""
        w_mask = self.mask[:, :, None].expand(-1, -1, self.d)
        return torch.cat([w_mask.reshape(self.num_models, -1), self.mask], dim=1)

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``W`` of shape ``(B, M, d)`` and ``a`` of shape ``(B, M)``."""
        md = self.max_width * self.d
        return theta[:, :md].reshape(-1, self.max_width, self.d), theta[:, md:]

    def join(self, w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.cat([w.reshape(w.shape[0], -1), a], dim=1)

    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(B, n)`` for inputs ``x`` of shape ``(B, n, d)``."""
        w, a = self.split(theta)
        pre = torch.einsum("bnd,bmd->bnm", x, w)
        scale = self.widths.to(theta.dtype).rsqrt()
        weights = torch.where(self.mask, a, torch.zeros_like(a)) * scale[:, None]
        return torch.einsum("bnm,bm->bn", self.activation(pre), weights)

    def real_params(self, theta: torch.Tensor, b: int) -> torch.Tensor:
        """The unpadded parameter vector of model ``b``: ``W`` (m x d) then ``a``."""
        m = int(self.widths[b])
        w, a = self.split(theta[b : b + 1])
        return torch.cat([w[0, :m].reshape(-1), a[0, :m]])

    def with_real_params(self, theta: torch.Tensor, b: int, params: torch.Tensor) -> torch.Tensor:
        """A copy of ``theta`` whose model ``b`` holds the unpadded vector ``params``."""
        m = int(self.widths[b])
        w, a = self.split(theta.clone())
        w[b, :m] = params[: m * self.d].view(m, self.d).to(theta.dtype)
        a[b, :m] = params[m * self.d :].to(theta.dtype)
        return self.join(w, a)


class Objective:
    """Empirical risk ``L = (1/2n) sum_i (f(x_i) - y_i)^2`` of every model in a batch.

    Models are independent, so the gradient of the summed loss is each
    model's own gradient: one autograd call serves the whole batch.
    """

    def __init__(self, net: TwoLayerBatch, x: torch.Tensor, y: torch.Tensor) -> None:
        self.net = net
        self.x = x
        self.y = y

    @property
    def num_samples(self) -> int:
        return int(self.x.shape[1])

    def _rows(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if rows is None:
            return self.x, self.y
        x = torch.gather(self.x, 1, rows[:, :, None].expand(-1, -1, self.x.shape[2]))
        return x, torch.gather(self.y, 1, rows)

    def loss(self, theta: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        x, y = self._rows(rows)
        residual = self.net.forward(theta, x) - y
        return 0.5 * residual.pow(2).mean(dim=1)

    def loss_and_grad(
        self, theta: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            theta = theta.detach().requires_grad_(True)
            loss = self.loss(theta, rows)
            (grad,) = torch.autograd.grad(loss.sum(), theta)
        return loss.detach(), grad

    def point(self, theta: torch.Tensor, b: int) -> PointTerms:
        """Float64 second-order terms of model ``b`` (unpadded)."""
        m = int(self.net.widths[b])
        w, a = self.net.split(theta[b : b + 1])
        return point_terms(self.net.activation, w[0, :m], a[0, :m], self.x[b], self.y[b])

    def hessian(self, theta: torch.Tensor, b: int) -> torch.Tensor:
        """Dense float64 Hessian of model ``b`` over its unpadded parameters."""
        return hessian(self.point(theta, b))

    def curvature(self, theta: torch.Tensor, b: int) -> EmpiricalCurvature:
        return EmpiricalCurvature(self.point(theta, b), self.net.activation)

    def prepare_initial(self, theta: torch.Tensor) -> torch.Tensor:
        """Hook for objectives that constrain parameters; the empirical risk constrains none."""
        return theta

    def astype(self, dtype: torch.dtype) -> Objective:
        return Objective(self.net, self.x.to(dtype), self.y.to(dtype))

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Objective:
        return Objective(self.net.to(device, dtype), self.x.to(device, dtype), self.y.to(device, dtype))

    def select(self, indices: torch.Tensor) -> Objective:
        """The objective of the models at ``indices`` (repeats allowed)."""
        idx = indices.to(self.x.device)
        return Objective(self.net.select(idx), self.x[idx], self.y[idx])
