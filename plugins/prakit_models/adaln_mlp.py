"""What the diffusion and flow heads share: MAR's residual MLP with adaLN on (t, h), and a base
class for per-token heads built on it (``batch_mul`` repeats in the loss; per-row noise and
batched classifier-free guidance in sampling)."""

from __future__ import annotations

import abc
import math
from typing import Any, Callable

import torch
from torch import nn

from prakit.plugin_api import Generators, StateGenerator, randn

#: ``guided(x, t)``: the head's guided prediction (fp32) for states x (N, state_dim) at time t (a number).
Guided = Callable[[torch.Tensor, float], torch.Tensor]
#: ``draw()``: fresh standard normal noise (N, state_dim), fp32, from the sample's generators.
Draw = Callable[[], torch.Tensor]


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


class AdaLNMLP(nn.Module):
    """Residual MLP over states whose blocks are modulated by an embedding of (t, h); starts at 0."""

    time_embed_dim = 256

    def __init__(self, state_dim: int, cond_dim: int, width: int, depth: int):
        super().__init__()
        self.time_embed = nn.Sequential(
            nn.Linear(self.time_embed_dim, width), nn.SiLU(), nn.Linear(width, width)
        )
        self.cond_proj = nn.Linear(cond_dim, width)
        self.input_proj = nn.Linear(state_dim, width)
        self.blocks = nn.ModuleList(ResBlock(width) for _ in range(depth))
        self.final = FinalLayer(width, state_dim)
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

    def forward(self, x: torch.Tensor, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Output (N, state_dim) for states x (N, state_dim), times t (N,) and conditions h (N, cond_dim)."""
        c = self.time_embed(timestep_embedding(t, self.time_embed_dim).to(h.dtype)) + self.cond_proj(h)
        x = self.input_proj(x)
        for block in self.blocks:
            x = block(x, c)
        return self.final(x, c)


class AdaLNHead(StateGenerator):
    """Base of the heads built on :class:`AdaLNMLP`; ``cfg`` has width, depth, batch_mul and sample_steps.

    Subclasses define the prediction that guidance acts on (:meth:`predict`), the loss of a batch of
    rows (:meth:`row_loss`) and the sampler (:meth:`integrate`).
    """

    def __init__(self, cfg: Any, *, state_dim: int, cond_dim: int, state_bound: float | None = None):
        super().__init__()
        self.cfg, self.state_dim, self.cond_dim, self.state_bound = cfg, state_dim, cond_dim, state_bound
        self.default_steps = cfg.sample_steps
        self.net = AdaLNMLP(state_dim, cond_dim, cfg.width, cfg.depth)

    @abc.abstractmethod
    def predict(self, x_t: torch.Tensor, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The quantity guidance acts on, for states x_t (N, state_dim), times t (N,), conditions h."""

    @abc.abstractmethod
    def row_loss(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Loss (N,) of targets z (N, state_dim) under h (N, cond_dim), with fresh times and noise."""

    @abc.abstractmethod
    def integrate(self, draw: Draw, guided: Guided, steps: int, temperature: float) -> torch.Tensor:
        """States (N, state_dim) from ``steps`` steps of ``guided`` predictions; ``draw()`` gives
        fresh standard normal noise (N, state_dim), ``temperature`` scales the sampler's noise."""

    def guidance_scale(self, cfg_scale: float, t: float) -> float:
        """The guidance scale at time t of the sampler: ``cfg_scale`` at every step unless overridden."""
        return cfg_scale

    def compile_sampling(self, mode: str) -> None:
        self.net.compile(mode=mode, dynamic=False)  # every step of every token: one shape per batch

    def loss(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        m = self.cfg.batch_mul  # each token m times, with fresh times and noise
        h_rows = h.reshape(-1, self.cond_dim).repeat(m, 1)
        z_rows = z.reshape(-1, self.state_dim).repeat(m, 1)
        return self.row_loss(h_rows, z_rows).view(m, -1).mean(dim=0).view(h.shape[:-1])

    @torch.no_grad()
    def sample(
        self,
        h: torch.Tensor,
        *,
        temperature: float = 1.0,
        steps: int | None = None,
        rng: Generators = None,
        cfg_scale: float = 1.0,
        h_uncond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Integrate from noise in fp32; with ``h_uncond`` each step runs [h, h_uncond] as one batch."""
        shape = (*h.shape[:-1], self.state_dim)
        h_rows = h.reshape(-1, self.cond_dim)
        if h_uncond is not None:
            if h_uncond.shape != h.shape:
                raise ValueError(f"h_uncond has shape {tuple(h_uncond.shape)}, h {tuple(h.shape)}")
            h_rows = torch.cat([h_rows, h_uncond.reshape(-1, self.cond_dim)])

        def guided(x: torch.Tensor, t: float) -> torch.Tensor:
            x_rows = x if h_uncond is None else torch.cat([x, x])
            t_rows = torch.full((len(h_rows),), t, device=h.device)
            pred = self.predict(x_rows.to(h.dtype), t_rows, h_rows).float()
            if h_uncond is None:
                return pred
            cond, uncond = pred.chunk(2)
            return uncond + self.guidance_scale(cfg_scale, t) * (cond - uncond)

        def draw() -> torch.Tensor:
            return randn(shape, rng, device=h.device).view(-1, self.state_dim)

        return self.integrate(draw, guided, steps or self.default_steps, temperature).view(shape)
