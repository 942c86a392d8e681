"""Seed, capture and restore every random number generator a training run draws from.

Each rank of a run draws from its own stream, seeded from (seed, rank, the step it began at), so
that ranks draw different noise. A captured state is made of tensors and plain Python values
only, so it survives ``torch.save`` and ``torch.load(..., weights_only=True)`` inside a checkpoint.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from prakit.random import hash_seed


def capture() -> dict[str, Any]:
    """The states of Python's ``random``, numpy's global generator, torch's CPU generator and,
    when CUDA is available, the default generator of every CUDA device."""
    _, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    """Put back the generators from :func:`capture` (its tensors may be on any device).

    CUDA states are restored device by device, as many as both the state and this machine have;
    they are skipped where CUDA is unavailable.
    """
    random.setstate(state["python"])
    numpy = state["numpy"]
    key = numpy["key"].cpu().numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available():
        for device, cuda_state in zip(range(torch.cuda.device_count()), state.get("cuda", ())):
            torch.cuda.set_rng_state(cuda_state.cpu(), device)


def seed_all(value: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch's CPU and CUDA generators
    from ``value`` (in [0, 2**64))."""
    random.seed(value)
    np.random.seed([value & 0xFFFFFFFF, value >> 32])
    torch.manual_seed(value)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of ``rank``'s stream in a run seeded ``seed``, for a stream begun at ``step``."""
    return hash_seed(hash_seed(seed, rank), step)


def restore_rank(states: list[dict[str, Any]], rank: int, world_size: int, *, seed: int, step: int) -> bool:
    """Restore ``rank``'s generators from ``states``, one :func:`capture` per rank; return whether
    that was exact. States of another number of ranks cannot be shared out: every rank then
    begins a fresh stream at ``step`` (:func:`rank_seed`)."""
    if len(states) == world_size:
        restore(states[rank])
        return True
    seed_all(rank_seed(seed, rank, step))
    return False
