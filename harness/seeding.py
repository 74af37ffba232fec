"""Seeds derived from what a quantity depends on, never from global RNG state."""

from __future__ import annotations

import hashlib

import torch


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from a stable hash of ``parts`` (same on every machine)."""
    text = "\x1f".join(repr(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded from ``parts``; sample on CPU, then move, for device-independent draws."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(stable_seed(*parts))
    return gen
