"""Baseline rollout approximators: teacher forcing and pixel-space noise injection."""

import math
from typing import ClassVar

import attrs
import torch
from attrs.validators import ge, in_

from prakit.plugin_api import RolloutApproximator, RolloutConfig, RolloutModel


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
    """``schedule``: ``fixed``: sigma = sigma_max; ``uniform``: sigma ~ U[sigma_min, sigma_max];
    ``decay``: cosine from sigma_max to sigma_min over ``decay_steps`` (FARMER), then sigma_min.
    ``per``: a uniform sigma is drawn once per ``sample`` or per ``position``. ``clamp``: the noisy
    tokens are clamped to [-1, 1], the range inference clamps generated tokens to."""

    name: ClassVar[str] = "noise_injection"
    schedule: str = attrs.field(default="decay", validator=in_(("fixed", "uniform", "decay")))
    sigma_max: float = attrs.field(default=0.1, validator=ge(0.0))
    sigma_min: float = attrs.field(default=0.005, validator=ge(0.0))
    decay_steps: int = attrs.field(default=400_000, validator=ge(1))
    per: str = attrs.field(default="sample", validator=in_(("sample", "position")))
    clamp: bool = True

    @sigma_max.validator
    def _check_range(self, attribute, value):
        if value < self.sigma_min:
            raise ValueError(f"'sigma_max' must be >= sigma_min ({self.sigma_min}): {value}")


class NoiseInjection(RolloutApproximator):
    """x~ = clamp(x + sigma * eps, -1, 1) in pixel space; sigma fixed, uniform or decaying.

    Measures ``perturbation_rms``: the RMS of x~ - x, the perturbation applied after clamping.
    """

    def __init__(self, cfg: NoiseInjectionConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("perturbation_rms", torch.tensor(float("nan")), persistent=False)

    def sigma(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """Noise scales (B, 1, 1) per sample or (B, L, 1) per position."""
        cfg = self.cfg
        shape = (x.shape[0], 1, 1) if cfg.per == "sample" else (*x.shape[:-1], 1)
        if cfg.schedule == "uniform":
            return cfg.sigma_min + (cfg.sigma_max - cfg.sigma_min) * torch.rand(shape, device=x.device, dtype=x.dtype)
        if cfg.schedule == "decay":
            progress = min(step / cfg.decay_steps, 1.0)
            value = cfg.sigma_min + 0.5 * (cfg.sigma_max - cfg.sigma_min) * (1 + math.cos(math.pi * progress))
        else:
            value = cfg.sigma_max
        return torch.full(shape, value, device=x.device, dtype=x.dtype)

    def forward(self, x, z, labels, *, model: RolloutModel, step: int) -> torch.Tensor:
        noisy = x + self.sigma(x, step) * torch.randn_like(x)
        if self.cfg.clamp:
            noisy = noisy.clamp(-1, 1)
        self.perturbation_rms.copy_((noisy - x).detach().float().square().mean().sqrt())
        return noisy

    def measurements(self) -> dict[str, float]:
        rms = self.perturbation_rms.item()
        return {} if math.isnan(rms) else {"perturbation_rms": rms}
