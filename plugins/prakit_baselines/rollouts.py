"""Baseline rollout approximators: teacher forcing, pixel-space noise injection, exact rollout."""

import math
from typing import ClassVar

import attrs
import torch
from attrs.validators import ge, gt, in_, le, optional

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


@attrs.frozen
class ExactRolloutConfig(RolloutConfig):
    """On a training step (with ``probability``), the first ``fraction`` of the batch reads a
    ``window`` of the model's own tokens after a ground-truth prefix of random length (at least
    ``min_prefix`` tokens), and the ground truth after them, so every input stays on the image
    its targets come from. Tokens are drawn as inference draws them: the run's ``sample``
    settings, with ``head_steps`` (if set) in place of its head steps."""

    name: ClassVar[str] = "exact_rollout"
    probability: float = attrs.field(default=1.0, validator=[ge(0.0), le(1.0)])
    fraction: float = attrs.field(default=1.0, validator=[ge(0.0), le(1.0)])
    window: int = attrs.field(default=1, validator=gt(0))
    min_prefix: int = attrs.field(default=1, validator=ge(0))
    head_steps: int | None = attrs.field(default=None, validator=optional(gt(0)))


class ExactRollout(RolloutApproximator):
    """x~ = the ground truth with a window of the model's own tokens, drawn with the KV cache
    after the ground-truth prefix, without gradient."""

    def __init__(self, cfg: ExactRolloutConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, x, z, labels, *, model: RolloutModel, step: int) -> torch.Tensor:
        cfg = self.cfg
        rows = round(cfg.fraction * x.shape[0])
        inputs = x.shape[1] - 1  # the last token is never an input, so it is never drawn
        if rows == 0 or cfg.min_prefix >= inputs or torch.rand(()) >= cfg.probability:
            return x
        start = int(torch.randint(cfg.min_prefix, inputs, ()))
        end = min(start + cfg.window, inputs)
        options = model.sampling if cfg.head_steps is None else attrs.evolve(model.sampling, steps=cfg.head_steps)
        was_training = model.training
        model.train(False)
        try:
            rolled = model.sample_tokens(labels[:rows], options, prefix=x[:rows, :start], length=end)
        finally:
            model.train(was_training)
        out = x.clone()
        out[:rows, start:end] = rolled[:, start:].to(x.dtype)
        return out
