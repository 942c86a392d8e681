"""MAR-style diffusion head: a residual MLP with adaLN on (t, h), cosine schedule, DDIM or DDPM sampling."""

from __future__ import annotations

import itertools
import math
import operator
from typing import ClassVar

import attrs
import torch
from attrs.validators import gt, in_, optional

from prakit.plugin_api import GeneratorConfig, PrakitError
from prakit_models.adaln_mlp import AdaLNHead, Draw, Guided


@attrs.frozen
class DiffusionHeadConfig(GeneratorConfig):
    """``sampler``: ``ddim`` (deterministic, eta 0; ``temperature`` scales the starting noise) or
    ``ddpm`` (stochastic ancestral sampling with the posterior variance; ``temperature`` scales
    the noise added at every step, as in MAR). ``clip_x0`` clips the clean-state estimate at
    every step to +-``clip_range`` (None: the decoder's state bound) and recomputes eps from it
    (the first steps of a cosine schedule otherwise blow up)."""

    name: ClassVar[str] = "diffusion"
    width: int = attrs.field(default=1024, validator=gt(0))
    depth: int = attrs.field(default=3, validator=gt(0))
    num_timesteps: int = attrs.field(default=1000, validator=gt(1))
    prediction: str = attrs.field(default="eps", validator=in_(("eps", "v")))
    sampler: str = attrs.field(default="ddim", validator=in_(("ddim", "ddpm")))
    sample_steps: int = attrs.field(default=50, validator=gt(0))
    batch_mul: int = attrs.field(default=4, validator=gt(0))
    clip_x0: bool = True
    clip_range: float | None = attrs.field(default=None, validator=optional(gt(0.0)))


def cosine_alpha_bar(num_timesteps: int, s: float = 0.008) -> list[float]:
    """alpha_bar_t, t = 0..T-1, of the improved-DDPM cosine schedule (betas capped at 0.999)."""
    f = [math.cos((i / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2 for i in range(num_timesteps + 1)]
    alphas = (1 - min(1 - f[i + 1] / f[i], 0.999) for i in range(num_timesteps))
    return list(itertools.accumulate(alphas, operator.mul))


def respaced_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` timesteps evenly spaced from T-1 down to 0."""
    return [round((num_timesteps - 1) * (1 - i / max(steps - 1, 1))) for i in range(steps)]


def eps_and_x0(
    pred: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, prediction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise and clean estimates implied by a network prediction (eps or v) at x_t."""
    a, b = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    if prediction == "eps":
        return pred, (x_t - b * pred) / a
    return b * x_t + a * pred, a * x_t - b * pred  # v = a * eps - b * x0


class DiffusionHead(AdaLNHead):
    """MAR-style residual-MLP diffusion head with adaLN on (t, h); cosine schedule, DDIM or DDPM sampling."""

    def __init__(self, cfg: DiffusionHeadConfig, *, state_dim: int, cond_dim: int, state_bound: float | None = None):
        super().__init__(cfg, state_dim=state_dim, cond_dim=cond_dim, state_bound=state_bound)
        self.alpha_bar_values = cosine_alpha_bar(cfg.num_timesteps)  # numbers: sampling runs on meta too
        self.register_buffer("alpha_bar", torch.tensor(self.alpha_bar_values), persistent=False)
        self.clip = (cfg.clip_range or state_bound) if cfg.clip_x0 else None
        if cfg.clip_x0 and self.clip is None:
            raise PrakitError("the diffusion head clips its clean estimate, but the decoder declares no state "
                              "bound: set model.generator.clip_range, or model.generator.clip_x0 = false")

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The network's eps or v for noisy states (N, state_dim) at integer timesteps (N,)."""
        return self.net(x_t, t, h)

    def row_loss(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        t = torch.randint(0, self.cfg.num_timesteps, (len(z),), device=z.device)
        noise = torch.randn_like(z)
        a = self.alpha_bar[t, None].sqrt()
        b = (1 - self.alpha_bar[t, None]).sqrt()
        pred = self.predict(a * z + b * noise, t, h)
        target = noise if self.cfg.prediction == "eps" else a * noise - b * z
        return (pred.float() - target.float()).pow(2).mean(dim=-1)

    def integrate(self, draw: Draw, guided: Guided, steps: int, temperature: float) -> torch.Tensor:
        """DDIM or DDPM over ``steps`` respaced timesteps, clipping the clean estimate if configured."""
        cfg, alpha_bar = self.cfg, self.alpha_bar_values
        if steps > cfg.num_timesteps:
            raise ValueError(f"at most num_timesteps = {cfg.num_timesteps} sampling steps, got {steps}")
        timesteps = respaced_timesteps(cfg.num_timesteps, steps)
        x = draw() if cfg.sampler == "ddpm" else temperature * draw()
        for i, t in enumerate(timesteps):
            now = alpha_bar[t]
            eps, x0 = eps_and_x0(guided(x, t), x, now, cfg.prediction)
            if self.clip is not None:
                x0 = x0.clamp(-self.clip, self.clip)
                eps = (x - math.sqrt(now) * x0) / math.sqrt(1 - now)
            prev = alpha_bar[timesteps[i + 1]] if i + 1 < len(timesteps) else 1.0
            if cfg.sampler == "ddim":
                x = math.sqrt(prev) * x0 + math.sqrt(1 - prev) * eps
            elif prev == 1.0:  # the last DDPM step adds no noise
                x = x0
            else:
                x = posterior_mean(x, x0, now, prev) + temperature * posterior_std(now, prev) * draw()
        return x


def posterior_mean(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: float, alpha_bar_prev: float) -> torch.Tensor:
    """The mean of q(x_prev | x_t, x0) between two (respaced) timesteps."""
    beta = 1 - alpha_bar / alpha_bar_prev
    return (math.sqrt(alpha_bar_prev) * beta * x0 + math.sqrt(1 - beta) * (1 - alpha_bar_prev) * x_t) / (1 - alpha_bar)


def posterior_std(alpha_bar: float, alpha_bar_prev: float) -> float:
    """The standard deviation of q(x_prev | x_t, x0) (DDPM's fixed small variance)."""
    beta = 1 - alpha_bar / alpha_bar_prev
    return math.sqrt(beta * (1 - alpha_bar_prev) / (1 - alpha_bar))
