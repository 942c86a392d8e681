"""Small components the contract kit runs a component with, so that a plugin's contracts pass with
only that plugin loaded: a causal running-mean backbone, a Gaussian head, a linear decoder,
teacher forcing and a quadrant-mean feature network, registered under the name ``stand_in`` on
first use."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch import nn

from prakit import plugins
from prakit.components import Backbone, FeatureNetwork, PixelDecoder, RolloutApproximator, StateGenerator
from prakit.config import ModelConfig
from prakit.kinds import BackboneConfig, DecoderConfig, FeatureNetworkConfig, GeneratorConfig, RolloutConfig
from prakit.random import randn

#: The plugin name the stand-ins register under.
PLUGIN = "prakit-stand-ins"


@attrs.frozen
class StandInBackboneConfig(BackboneConfig):
    name: ClassVar[str] = "stand_in"
    width: int = 8


class StandInBackbone(Backbone):
    """h_i = running mean of the embedded start and input tokens up to i (causal)."""

    def __init__(self, cfg, *, token_dim, seq_len, num_classes, grid):
        super().__init__()
        self.width = cfg.width
        self.embed = nn.Linear(token_dim, cfg.width)
        self.classes = nn.Embedding(num_classes + 1, cfg.width)
        self.out = nn.Linear(cfg.width, cfg.width)

    def forward(self, tokens, labels):
        seq = torch.cat([self.classes(labels)[:, None], self.embed(tokens)], 1)
        counts = torch.arange(1, seq.shape[1] + 1, dtype=seq.dtype)[None, :, None]
        return self.out(seq.cumsum(1) / counts)

    def start(self, labels):
        cache = {"sum": self.classes(labels), "count": 1}
        return self.out(cache["sum"]), cache

    def step(self, token, cache):
        cache["sum"] = cache["sum"] + self.embed(token)
        cache["count"] += 1
        return self.out(cache["sum"] / cache["count"])


@attrs.frozen
class StandInGeneratorConfig(GeneratorConfig):
    name: ClassVar[str] = "stand_in"


class StandInGenerator(StateGenerator):
    """A Gaussian with a learned mean: z ~ N(W h, temperature^2)."""

    def __init__(self, cfg, *, state_dim, cond_dim, state_bound=None):
        super().__init__()
        self.state_dim = state_dim
        self.mean = nn.Linear(cond_dim, state_dim)

    def loss(self, h, z):
        return (self.mean(h) - z).square().mean(-1)

    def sample(self, h, *, temperature=1.0, steps=None, rng=None, cfg_scale=1.0, h_uncond=None):
        mean = self.mean(h)
        if h_uncond is not None:
            mean = self.mean(h_uncond) + cfg_scale * (mean - self.mean(h_uncond))
        return (mean + temperature * randn(mean.shape, rng, device=mean.device)).float()


class LinearDecoder(PixelDecoder):
    """A random linear encoder/decoder pair."""

    def __init__(self, token_dim: int, state_dim: int):
        super().__init__()
        self.token_dim, self.state_dim = token_dim, state_dim
        self.encoder = torch.nn.Linear(token_dim, state_dim)
        self.decoder = torch.nn.Linear(state_dim, token_dim)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)


@attrs.frozen
class StandInDecoderConfig(DecoderConfig):
    name: ClassVar[str] = "stand_in"
    state_dim: int = 4


def stand_in_decoder(cfg: StandInDecoderConfig, *, token_dim, patch_size, channels) -> LinearDecoder:
    """A :class:`LinearDecoder` that keeps the patch layout it was built with."""
    decoder = LinearDecoder(token_dim, cfg.state_dim)
    decoder.patch_size, decoder.channels = patch_size, channels
    return decoder


@attrs.frozen
class StandInRolloutConfig(RolloutConfig):
    name: ClassVar[str] = "stand_in"


class StandInRollout(RolloutApproximator):
    """Teacher forcing: the inputs are the ground truth."""

    def __init__(self, cfg):
        super().__init__()

    def forward(self, x, z, labels, *, model, step):
        return x


@attrs.frozen
class StandInFeaturesConfig(FeatureNetworkConfig):
    name: ClassVar[str] = "stand_in"


class StandInFeatures(FeatureNetwork):
    """Each channel's mean over the four quadrants of the image; no logits; spatial features: each
    channel's mean over a 3 x 3 grid."""

    def __init__(self, cfg, *, store, device, progress):
        super().__init__()
        channels = store.image_shape[-1] if store is not None else 3
        self.num_features, self.num_spatial = 4 * channels, 9 * channels

    def forward(self, images):
        x = images.permute(0, 3, 1, 2).float() / 255
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1), None

    def forward_with_spatial(self, images):
        x = images.permute(0, 3, 1, 2).float() / 255
        return *self(images), torch.nn.functional.adaptive_avg_pool2d(x, 3).flatten(1)

    def fingerprint(self):
        return "57" * 8


class StandIns:
    """The plugin that registers the stand-ins."""

    @plugins.hookimpl
    def register_backbones(self, registrar):
        registrar.add(StandInBackboneConfig, StandInBackbone)

    @plugins.hookimpl
    def register_generators(self, registrar):
        registrar.add(StandInGeneratorConfig, StandInGenerator)

    @plugins.hookimpl
    def register_decoders(self, registrar):
        registrar.add(StandInDecoderConfig, stand_in_decoder)

    @plugins.hookimpl
    def register_rollouts(self, registrar):
        registrar.add(StandInRolloutConfig, StandInRollout)

    @plugins.hookimpl
    def register_feature_networks(self, registrar):
        registrar.add(StandInFeaturesConfig, StandInFeatures)


def register_stand_ins() -> None:
    """Register the stand-ins, once per plugin manager."""
    if not plugins.get_plugin_manager().has_plugin(PLUGIN):
        plugins.register_plugin(StandIns(), name=PLUGIN)


def remove_stand_ins() -> None:
    """Unregister the stand-ins, if they are registered."""
    if plugins.get_plugin_manager().has_plugin(PLUGIN):
        plugins.unregister_plugin(PLUGIN)


def stand_in_model_config(patch_size: int = 4) -> ModelConfig:
    """A model made of stand-ins."""
    register_stand_ins()
    return ModelConfig(backbone=StandInBackboneConfig(), generator=StandInGeneratorConfig(),
                       decoder=StandInDecoderConfig(), rollout=StandInRolloutConfig(), patch_size=patch_size)
