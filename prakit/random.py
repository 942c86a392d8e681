"""Noise drawn per sample, so that a sample's images do not depend on how a run is sharded."""

from __future__ import annotations

from typing import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


def randn(
    shape: tuple[int, ...],
    generator: Generators,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of ``shape``.

    ``generator`` is one generator for the whole tensor, or one per row (``shape[0]`` of them):
    row ``i`` is then drawn from ``generator[i]`` alone, whatever the other rows are.
    """
    if generator is None or isinstance(generator, torch.Generator):
        where = generator.device if generator is not None else device
        return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for {shape[0]} rows")
    rows = [torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generator]
    return torch.stack(rows).to(device)


def sample_generators(seed: int, indices: Sequence[int], device: str = "cpu") -> list[torch.Generator]:
    """One generator per sample index, seeded from (seed, index)."""
    return [torch.Generator(device).manual_seed(hash_seed(seed, i)) for i in indices]


def hash_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of a run seeded ``seed`` (splitmix64)."""
    x = (seed * 0x9E3779B97F4A7C15 + index + 1) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) >> 1
