"""Rectified-flow head (JiT conventions): x- or v-prediction, logit-normal t, Euler/Heun sampling,
JiT's noise scale, guidance interval and last Euler step as options."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from attrs.validators import deep_iterable, ge, gt, in_, le

from prakit.plugin_api import GeneratorConfig
from prakit_models.adaln_mlp import AdaLNHead, Draw, Guided


def time_interval(_instance, attribute, value: tuple[float, float]) -> None:
    """A validator: (lo, hi) with 0 <= lo < hi <= 1."""
    if len(value) != 2 or not 0.0 <= value[0] < value[1] <= 1.0:
        raise ValueError(f"'{attribute.name}' must be [lo, hi] with 0 <= lo < hi <= 1, e.g. [0.1, 1.0]: {value!r}")


@attrs.frozen
class FlowHeadConfig(GeneratorConfig):
    """t ~ sigmoid(N(``t_mean``, ``t_std``)) in training; ``t_eps`` bounds 1 - t below where an
    x-prediction is turned into a velocity; ``noise_scale`` is the standard deviation of the noise
    in training and of the starting noise in sampling (``temperature`` scales the latter further);
    guidance acts only for ``guidance_interval[0] < t < guidance_interval[1]`` (from t = 0 when the
    interval starts at 0), elsewhere the conditional prediction is used; the last step is an
    Euler step to t = 1 (``"euler"``, JiT) or returns the clean estimate the guided velocity
    implies (``"clean"``; docs/method.md says why it is not the default). JiT's values: t_mean
    -0.8, t_std 0.8, t_eps 0.05, noise_scale 1 (2 at 512 px), guidance_interval [0.1, 1], sampler
    heun, 50 steps, last_step euler."""

    name: ClassVar[str] = "flow"
    width: int = attrs.field(default=1024, validator=gt(0))
    depth: int = attrs.field(default=3, validator=gt(0))
    prediction: str = attrs.field(default="x", validator=in_(("x", "v")))
    t_mean: float = attrs.field(default=-0.8, validator=[ge(-10.0), le(10.0)])  # beyond, t is ~0 or ~1
    t_std: float = attrs.field(default=0.8, validator=gt(0.0))
    sampler: str = attrs.field(default="heun", validator=in_(("euler", "heun")))
    sample_steps: int = attrs.field(default=50, validator=gt(0))
    batch_mul: int = attrs.field(default=4, validator=gt(0))
    t_eps: float = attrs.field(default=0.05, validator=[gt(0.0), le(1.0)])
    noise_scale: float = attrs.field(default=1.0, validator=gt(0.0))
    guidance_interval: tuple[float, float] = attrs.field(  # the members' bounds, declared for config strategies
        default=(0.0, 1.0), validator=[time_interval, deep_iterable(member_validator=[ge(0.0), le(1.0)])])
    last_step: str = attrs.field(default="euler", validator=in_(("euler", "clean")))


class FlowHead(AdaLNHead):
    """Rectified-flow head on MAR's adaLN MLP: x- or v-prediction, loss in v-space, Euler/Heun ODE.

    Time runs from noise to data: z_t = t * z + (1 - t) * eps, t = 0 pure noise, t = 1 clean (JiT),
    eps ~ N(0, noise_scale^2), velocity v = dz_t/dt = z - eps. The network sees t * 1000. An
    x-prediction x is turned into the velocity (x - z_t) / max(1 - t, t_eps), and in training the
    target velocity is formed the same way from z (JiT), so both predictions are trained and
    guided in v-space.
    """

    def predict(self, z_t: torch.Tensor, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The velocity (N, state_dim) at states z_t (N, state_dim) and times t (N,) in [0, 1]."""
        out = self.net(z_t, 1000 * t, h)
        return out if self.cfg.prediction == "v" else self.velocity(out, z_t, t)

    def velocity(self, z: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(z - z_t) / max(1 - t, t_eps): the velocity towards z, for times t (N,)."""
        return (z - z_t) / (1 - t[:, None]).clamp_min(self.cfg.t_eps)

    def guidance_scale(self, cfg_scale: float, t: float) -> float:
        """``cfg_scale`` inside the guidance interval, 1 (the conditional prediction) outside it."""
        lo, hi = self.cfg.guidance_interval
        return cfg_scale if t < hi and (lo == 0 or t > lo) else 1.0

    def row_loss(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        normal = torch.randn(len(z), device=z.device, dtype=z.dtype)
        t = torch.sigmoid(self.cfg.t_mean + self.cfg.t_std * normal)  # logit-normal
        noise = self.cfg.noise_scale * torch.randn_like(z)
        z_t = t[:, None] * z + (1 - t[:, None]) * noise
        target = z - noise if self.cfg.prediction == "v" else self.velocity(z, z_t, t)
        return (self.predict(z_t, t, h).float() - target.float()).pow(2).mean(dim=-1)

    def clean(self, z_t: torch.Tensor, v: torch.Tensor, t: float) -> torch.Tensor:
        """The clean state a velocity v at (z_t, t) points to: the inverse of :meth:`velocity` for
        x-prediction, an Euler step to t = 1 for v-prediction."""
        span = 1 - t if self.cfg.prediction == "v" else max(1 - t, self.cfg.t_eps)
        return z_t + span * v

    def integrate(self, draw: Draw, guided: Guided, steps: int, temperature: float) -> torch.Tensor:
        """Euler or Heun from t = 0 in ``steps`` uniform steps; the last step is ``cfg.last_step``."""
        x = temperature * self.cfg.noise_scale * draw()
        for i in range(steps - 1):
            t, t_next = i / steps, (i + 1) / steps
            v = guided(x, t)
            x_next = x + (t_next - t) * v
            if self.cfg.sampler == "heun":
                x_next = x + (t_next - t) * 0.5 * (v + guided(x_next, t_next))
            x = x_next
        t = (steps - 1) / steps
        v = guided(x, t)
        return self.clean(x, v, t) if self.cfg.last_step == "clean" else x + (1 - t) * v

    def network_evaluations(self, steps: int) -> int:
        return 2 * steps - 1 if self.cfg.sampler == "heun" else steps
