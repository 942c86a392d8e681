"""Baseline rollout approximators: teacher forcing and pixel-space noise injection."""

import math
from typing import ClassVar

import attrs
import torch
from attrs.validators import ge, in_

from prakit.components import RolloutApproximator, RolloutConfig, RolloutModel


@attrs.frozen
class TeacherForcingConfig(RolloutConfig):
    name: ClassVar[str] = "teacher_forcing"


class TeacherForcing(RolloutApproximator):
    """x~ = x: the backbone reads the ground-truth prefix."""

    def __init__(self, cfg: TeacherForcingConfig):
        super().__init__()

    def forward(self, x, z, labels, *, model: RolloutModel, step: int) -> torch.Tensor:
        return x


@attrs.frozen
class NoiseInjectionConfig(RolloutConfig):
    """``fixed``: sigma = sigma_max; ``uniform``: sigma ~ U[0, sigma_max] per sample;
    ``decay``: cosine from sigma_max to sigma_min over ``decay_steps`` (FARMER)."""

    name: ClassVar[str] = "noise_injection"
    schedule: str = attrs.field(default="decay", validator=in_(("fixed", "uniform", "decay")))
    sigma_max: float = attrs.field(default=0.1, validator=ge(0.0))
    sigma_min: float = attrs.field(default=0.005, validator=ge(0.0))
    decay_steps: int = attrs.field(default=400_000, validator=ge(1))


class NoiseInjection(RolloutApproximator):
    """x~ = x + sigma * eps in pixel space, sigma fixed, per-sample uniform or decaying."""

    def __init__(self, cfg: NoiseInjectionConfig):
        super().__init__()
        self.cfg = cfg

    def sigma(self, batch: int, step: int, device: torch.device) -> torch.Tensor:
        cfg = self.cfg
        if cfg.schedule == "uniform":
            return torch.rand(batch, 1, 1, device=device) * cfg.sigma_max
        if cfg.schedule == "decay":
            progress = min(step / cfg.decay_steps, 1.0)
            value = cfg.sigma_min + 0.5 * (cfg.sigma_max - cfg.sigma_min) * (1 + math.cos(math.pi * progress))
        else:
            value = cfg.sigma_max
        return torch.full((batch, 1, 1), value, device=device)

    def forward(self, x, z, labels, *, model: RolloutModel, step: int) -> torch.Tensor:
        sigma = self.sigma(x.shape[0], step, x.device).to(x.dtype)
        return x + sigma * torch.randn_like(x)
