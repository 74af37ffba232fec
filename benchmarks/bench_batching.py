"""Batched training of many models at once versus a Python loop over them.

Prints the measured speed-up; the harness's design assumes it is large.
"""

from __future__ import annotations

import time

import torch

from harness.activation_math import bind
from harness.network import Objective, TwoLayerBatch
from harness.optim_loop import Stopping
from harness.registry import Registry

STEPS = 200


def _models(num: int, n: int, d: int) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    widths = [int(w) for w in torch.linspace(2, 2 * n, num).round()]
    return widths, torch.randn(num, n, d, generator=gen), torch.randn(num, n, generator=gen)


def _train(registry: Registry, widths: list[int], x: torch.Tensor, y: torch.Tensor) -> float:
    act = bind(registry.get("activation", "relu"))
    gd = registry.get("optimizer", "gd")
    net = TwoLayerBatch(torch.tensor(widths), x.shape[2], act)
    theta = 0.1 * torch.randn(len(widths), net.num_params)
    stopping = Stopping(STEPS, 0.0, 0.0, STEPS)
    started = time.perf_counter()
    gd.minimize(Objective(net, x, y), theta, gd.params(lr=0.1), stopping)
    return time.perf_counter() - started


def main() -> None:
    torch.set_num_threads(1)
    registry = Registry()
    for num, n, delta in [(27, 32, 0.5), (60, 100, 1.0)]:
        d = round(delta * n)
        widths, x, y = _models(num, n, d)
        batched = _train(registry, widths, x, y)
        looped = sum(_train(registry, [w], x[i : i + 1], y[i : i + 1]) for i, w in enumerate(widths))
        print(
            f"{num} models, n={n}, d={d}, {STEPS} GD steps: batched {batched:.2f}s, "
            f"one at a time {looped:.2f}s, speed-up x{looped / batched:.1f}"
        )


if __name__ == "__main__":
    main()
