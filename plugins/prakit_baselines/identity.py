"""The identity decoder: the intermediate state is the pixel token (plain pixel-space AR)."""

from typing import ClassVar

import attrs
import torch

from prakit.plugin_api import DecoderConfig, PixelDecoder


@attrs.frozen
class IdentityDecoderConfig(DecoderConfig):
    name: ClassVar[str] = "identity"


class IdentityDecoder(PixelDecoder):
    """z = x: the head generates raw pixel tokens (plain pixel-space AR), in [-1, 1]."""

    state_bound = 1.0

    def __init__(self, cfg: IdentityDecoderConfig, *, token_dim: int, **_: int):  # patch_size, channels: unused
        super().__init__()
        self.token_dim = self.state_dim = token_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(())
