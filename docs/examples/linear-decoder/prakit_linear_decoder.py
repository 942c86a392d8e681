"""A linear pixel decoder for prakit: z = LayerNorm(W_e x), x = W_d z."""

from typing import ClassVar

import attrs
import torch
from attrs.validators import gt

from prakit.plugin_api import DecoderConfig, PixelDecoder, Registrar, hookimpl


@attrs.frozen
class LinearDecoderConfig(DecoderConfig):
    name: ClassVar[str] = "linear"
    state_dim: int = attrs.field(default=16, validator=gt(0))


class LinearDecoder(PixelDecoder):
    """Linear encoder and decoder with a normalised low-dimensional state."""

    def __init__(self, cfg: LinearDecoderConfig, *, token_dim: int, **_: int):  # patch_size, channels: unused
        super().__init__()
        self.token_dim, self.state_dim = token_dim, cfg.state_dim
        self.encoder = torch.nn.Linear(token_dim, cfg.state_dim)
        self.decoder = torch.nn.Linear(cfg.state_dim, token_dim)
        self.norm = torch.nn.LayerNorm(cfg.state_dim, elementwise_affine=False)
        self.state_bound = (cfg.state_dim - 1) ** 0.5  # the largest entry a LayerNorm'd state can hold

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


@hookimpl
def register_decoders(registrar: Registrar) -> None:
    registrar.add(LinearDecoderConfig, LinearDecoder)
