"""Residual MLP encoder and pixel decoder between pixel tokens and a low-dimensional state."""

import math
from typing import ClassVar

import attrs
import torch
from attrs.validators import ge, gt
from torch import nn

from prakit.plugin_api import DecoderConfig, PixelDecoder


@attrs.frozen
class MLPDecoderConfig(DecoderConfig):
    """``normalize_state`` LayerNorms z (no affine) so the head's target has unit scale; then every
    component lies within +-sqrt(state_dim - 1). ``project_state`` re-normalises each generated
    state the same way before it is decoded (as SphereAR re-normalises after guidance)."""

    name: ClassVar[str] = "mlp"
    state_dim: int = attrs.field(default=16, validator=gt(0))
    width: int = attrs.field(default=1024, validator=gt(0))
    depth: int = attrs.field(default=2, validator=ge(0))
    normalize_state: bool = True
    project_state: bool = attrs.field(default=False)

    @project_state.validator
    def _check_projection(self, attribute, value):
        if value and not self.normalize_state:
            raise ValueError("'project_state' needs normalize_state = true: without it there is no set to project onto")


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


def residual_mlp(in_dim: int, width: int, depth: int, out_dim: int) -> nn.Sequential:
    blocks = [ResidualBlock(width) for _ in range(depth)]
    return nn.Sequential(nn.Linear(in_dim, width), *blocks, nn.LayerNorm(width), nn.Linear(width, out_dim))


class MLPDecoder(PixelDecoder):
    """Residual MLP encoder/decoder, pixel token <-> low-dim state, trained by reconstruction."""

    def __init__(self, cfg: MLPDecoderConfig, *, token_dim: int, **_: int):  # patch_size, channels: unused
        super().__init__()
        self.token_dim, self.state_dim = token_dim, cfg.state_dim
        self.encoder = residual_mlp(token_dim, cfg.width, cfg.depth, cfg.state_dim)
        self.decoder = residual_mlp(cfg.state_dim, cfg.width, cfg.depth, token_dim)
        self.state_norm = (
            nn.LayerNorm(cfg.state_dim, elementwise_affine=False) if cfg.normalize_state else nn.Identity()
        )
        self.state_bound = math.sqrt(cfg.state_dim - 1) if cfg.normalize_state else None
        self.project_state = cfg.project_state

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.state_norm(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return self.state_norm(z) if self.project_state else z
