"""MAR-style diffusion head: a residual MLP with adaLN on (t, h), cosine schedule, DDIM sampling."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch
from attrs.validators import gt, in_
from torch import nn

from prakit.components import GeneratorConfig, StateGenerator


@attrs.frozen
class DiffusionHeadConfig(GeneratorConfig):
    """``clip_x0`` clips the clean-state estimate to +-``clip_range`` at every DDIM step and
    recomputes eps from it (the first steps of a cosine schedule otherwise blow up)."""

    name: ClassVar[str] = "diffusion"
    width: int = attrs.field(default=1024, validator=gt(0))
    depth: int = attrs.field(default=3, validator=gt(0))
    num_timesteps: int = attrs.field(default=1000, validator=gt(1))
    prediction: str = attrs.field(default="eps", validator=in_(("eps", "v")))
    sample_steps: int = attrs.field(default=50, validator=gt(0))
    batch_mul: int = attrs.field(default=4, validator=gt(0))
    clip_x0: bool = True
    clip_range: float = attrs.field(default=3.0, validator=gt(0.0))


def cosine_alpha_bar(num_timesteps: int, s: float = 0.008) -> torch.Tensor:
    """alpha_bar_t, t = 0..T-1, of the improved-DDPM cosine schedule (betas capped at 0.999)."""
    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


def respaced_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` timesteps evenly spaced from T-1 down to 0."""
    return torch.linspace(num_timesteps - 1, 0, steps).round().long().tolist()


def eps_and_x0(
    pred: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, prediction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise and clean estimates implied by a network prediction (eps or v) at x_t."""
    a, b = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    if prediction == "eps":
        return pred, (x_t - b * pred) / a
    return b * x_t + a * pred, a * x_t - b * pred  # v = a * eps - b * x0


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (N, dim) of timesteps (N,)."""
    freqs = torch.exp(-math.log(max_period) * torch.arange(dim // 2, device=t.device) / (dim // 2))
    args = t[:, None].float() * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiffusionHead(StateGenerator):
    """MAR-style residual-MLP diffusion head with adaLN on (t, h); cosine schedule, DDIM sampling."""

    time_embed_dim: ClassVar[int] = 256

    def __init__(self, cfg: DiffusionHeadConfig, *, state_dim: int, cond_dim: int):
        super().__init__()
        self.cfg, self.state_dim, self.cond_dim = cfg, state_dim, cond_dim
        self.time_embed = nn.Sequential(
            nn.Linear(self.time_embed_dim, cfg.width), nn.SiLU(), nn.Linear(cfg.width, cfg.width)
        )
        self.cond_proj = nn.Linear(cond_dim, cfg.width)
        self.input_proj = nn.Linear(state_dim, cfg.width)
        self.blocks = nn.ModuleList(ResBlock(cfg.width) for _ in range(cfg.depth))
        self.final = FinalLayer(cfg.width, state_dim)
        self.register_buffer("alpha_bar", cosine_alpha_bar(cfg.num_timesteps).float(), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for linear in self.time_embed[::2]:
            nn.init.normal_(linear.weight, std=0.02)
        for layer in [*self.blocks, self.final]:  # each block starts as the identity, the output as 0
            nn.init.zeros_(layer.ada[-1].weight)
            nn.init.zeros_(layer.ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The network's prediction (eps or v) for noisy states (N, state_dim) at timesteps (N,)."""
        c = self.time_embed(timestep_embedding(t, self.time_embed_dim)) + self.cond_proj(h)
        x = self.input_proj(x_t)
        for block in self.blocks:
            x = block(x, c)
        return self.final(x, c)

    def loss(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        m = self.cfg.batch_mul
        h_flat = h.reshape(-1, self.cond_dim).repeat(m, 1)  # each token m times, with fresh t and noise
        z_flat = z.reshape(-1, self.state_dim).repeat(m, 1)
        t = torch.randint(0, self.cfg.num_timesteps, (z_flat.shape[0],), device=z.device)
        noise = torch.randn_like(z_flat)
        a = self.alpha_bar[t, None].sqrt()
        b = (1 - self.alpha_bar[t, None]).sqrt()
        pred = self.denoise(a * z_flat + b * noise, t, h_flat)
        target = noise if self.cfg.prediction == "eps" else a * noise - b * z_flat
        per_token = (pred.float() - target.float()).pow(2).mean(dim=-1)
        return per_token.view(m, -1).mean(dim=0).view(h.shape[:-1])

    @torch.no_grad()
    def sample(
        self,
        h: torch.Tensor,
        *,
        temperature: float = 1.0,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        cfg = self.cfg
        steps = steps or cfg.sample_steps
        if steps > cfg.num_timesteps:
            raise ValueError(f"at most num_timesteps = {cfg.num_timesteps} sampling steps, got {steps}")
        h_flat = h.reshape(-1, self.cond_dim)
        device = generator.device if generator is not None else h.device
        noise = torch.randn(h_flat.shape[0], self.state_dim, generator=generator, device=device)
        x = temperature * noise.to(h.device)
        timesteps = respaced_timesteps(cfg.num_timesteps, steps)
        alpha_bar = self.alpha_bar.tolist()
        for i, t in enumerate(timesteps):
            t_batch = torch.full((x.shape[0],), t, device=h.device)
            pred = self.denoise(x.to(h.dtype), t_batch, h_flat).float()
            eps, x0 = eps_and_x0(pred, x, alpha_bar[t], cfg.prediction)
            if cfg.clip_x0:
                x0 = x0.clamp(-cfg.clip_range, cfg.clip_range)
                eps = (x - math.sqrt(alpha_bar[t]) * x0) / math.sqrt(1 - alpha_bar[t])
            prev = alpha_bar[timesteps[i + 1]] if i + 1 < len(timesteps) else 1.0
            x = math.sqrt(prev) * x0 + math.sqrt(1 - prev) * eps
        return x.view(*h.shape[:-1], self.state_dim).to(h.dtype)
