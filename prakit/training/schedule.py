"""The learning-rate schedule: linear warmup, then constant or cosine decay."""

from __future__ import annotations

import math

from prakit.config.schema import OptimConfig


def learning_rate(optim: OptimConfig, step: int, total_steps: int, batch_size: int) -> float:
    """The learning rate for optimiser step ``step`` (counted from 0) of a ``total_steps`` run.

    The peak is ``optim.lr``, or ``optim.base_lr * batch_size / 256`` when ``lr`` is unset.
    Warmup is linear and reaches the peak at its last step: step ``s < warmup_steps`` gets
    ``peak * (s + 1) / warmup_steps``, so step 0 already trains. After warmup the rate stays at
    the peak (``constant``) or follows a half cosine from the peak at ``warmup_steps`` down to
    ``min_lr`` at ``total_steps`` (``cosine``), and stays at ``min_lr`` beyond it.
    """
    peak = optim.lr if optim.lr is not None else optim.base_lr * batch_size / 256
    if step < optim.warmup_steps:
        return peak * (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return peak
    progress = min(1.0, (step - optim.warmup_steps) / max(1, total_steps - optim.warmup_steps))
    return optim.min_lr + (peak - optim.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
