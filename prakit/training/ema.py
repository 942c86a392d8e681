"""Exponential moving averages of a module's weights."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


def ema_name(decay: float) -> str:
    """The name an EMA is saved and selected under, e.g. ``ema_0.9999``."""
    return f"ema_{decay:g}"


class EMA:
    """A float32 shadow of ``module``'s state: parameters averaged with one decay, buffers copied.

    The shadow has the keys of ``module.state_dict()``, so :meth:`state_dict` also loads
    straight into a fresh module with ``module.load_state_dict``. Floating-point parameters are
    averaged in float32; buffers (and any non-float parameter) keep their dtype and are copied
    on every update. Pass the bare module, not a ``torch.compile`` or DDP wrapper, whose keys
    carry a prefix.
    """

    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        live = module.state_dict(keep_vars=True)
        averaged = {k for k, v in live.items() if isinstance(v, nn.Parameter) and v.is_floating_point()}
        self.averaged = [k for k in live if k in averaged]
        self.copied = [k for k in live if k not in averaged]
        self.shadow = {
            k: v.detach().to(torch.float32, copy=True) if k in averaged else v.detach().clone()
            for k, v in live.items()
        }

    @torch.no_grad()
    def update(self, module: nn.Module, step: int | None = None) -> None:
        """``shadow = decay * shadow + (1 - decay) * param``, and buffers copied.

        With ``step`` the decay warms up as ``min(decay, (1 + step) / (10 + step))``, so early
        in a run the average is not dominated by the initial weights.
        """
        decay = self.decay if step is None else min(self.decay, (1 + step) / (10 + step))
        live = module.state_dict()
        if self.averaged:
            torch._foreach_lerp_(
                [self.shadow[k] for k in self.averaged], [live[k].float() for k in self.averaged], 1.0 - decay
            )
        if self.copied:
            torch._foreach_copy_([self.shadow[k] for k in self.copied], [live[k] for k in self.copied])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights, keyed like ``module.state_dict()`` (the tensors themselves, not copies)."""
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` (from :meth:`state_dict`) into the shadow; keys and shapes must match."""
        missing, unexpected = self.shadow.keys() - state.keys(), state.keys() - self.shadow.keys()
        if missing or unexpected:
            raise ValueError(f"EMA state does not match: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        for key, value in state.items():
            shadow = self.shadow[key]
            if value.shape != shadow.shape:
                raise ValueError(f"EMA state {key!r} has shape {tuple(value.shape)}, expected {tuple(shadow.shape)}")
            shadow.copy_(value)

    def copy_to(self, module: nn.Module) -> None:
        """Overwrite ``module``'s weights with the shadow (cast to the module's dtypes)."""
        module.load_state_dict(self.shadow)

    @contextlib.contextmanager
    def applied(self, module: nn.Module) -> Iterator[nn.Module]:
        """Run the block with the EMA weights in ``module``; the live weights come back afterwards, bit for bit."""
        live = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.copy_to(module)
        try:
            yield module
        finally:
            module.load_state_dict(live)
