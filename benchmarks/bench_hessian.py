"""Analytic float64 Hessian versus torch.func.hessian of the same loss."""

from __future__ import annotations

import time

import torch

from harness.activation_math import bind
from harness.hessian import hessian, point_terms
from harness.registry import Registry


def main() -> None:
    torch.set_num_threads(1)
    act = bind(Registry().get("activation", "relu"))
    gen = torch.Generator().manual_seed(0)
    for n, d, m in [(32, 16, 32), (100, 50, 40)]:
        x = torch.randn(n, d, generator=gen, dtype=torch.float64)
        y = torch.randn(n, generator=gen, dtype=torch.float64)
        w = torch.randn(m, d, generator=gen, dtype=torch.float64)
        a = torch.randn(m, generator=gen, dtype=torch.float64)

        def loss(theta: torch.Tensor) -> torch.Tensor:
            f = act(x @ theta[: m * d].view(m, d).T) @ theta[m * d :] / m**0.5
            return 0.5 * ((f - y) ** 2).mean()

        theta = torch.cat([w.reshape(-1), a])
        torch.func.hessian(loss)(theta)  # warm-up: the first call pays one-off set-up costs
        started = time.perf_counter()
        reference = torch.func.hessian(loss)(theta)
        autograd_s = time.perf_counter() - started
        started = time.perf_counter()
        analytic = hessian(point_terms(act, w, a, x, y))
        analytic_s = time.perf_counter() - started
        err = float((analytic - reference).abs().max())
        print(
            f"n={n} d={d} m={m} (P={theta.numel()}): analytic {analytic_s * 1e3:.1f} ms, "
            f"torch.func.hessian {autograd_s * 1e3:.1f} ms, speed-up x{autograd_s / analytic_s:.1f}, "
            f"max difference {err:.1e}"
        )


if __name__ == "__main__":
    main()
