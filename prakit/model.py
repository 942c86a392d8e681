"""The autoregressive model: a backbone, a state generator, a pixel decoder and a rollout
approximator, composed into one training loss and one sampler."""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable, NamedTuple, Sequence

import torch
from PIL import Image
from torch import nn

from prakit import registry
from prakit.choices import MODEL_KINDS
from prakit.components import Backbone, PixelDecoder, RolloutApproximator, StateGenerator
from prakit.config import ExperimentConfig, ModelConfig, SampleConfig, with_options
from prakit.errors import ConfigError, PrakitError
from prakit.kinds import ComponentConfig
from prakit.random import Generators, sample_generators

Check = Callable[[str, torch.Tensor], torch.Tensor]


class Losses(NamedTuple):
    """The terms of one training loss; ``total`` is what is minimised (a named tuple, which
    ``torch.compile`` traces: it cannot build a frozen attrs class)."""

    total: torch.Tensor
    head: torch.Tensor
    reconstruction: torch.Tensor


class ARModel(nn.Module):
    """Pixel-space AR model: patches -> decoder states -> rollout inputs -> backbone -> head.

    ``sampling`` is how inference draws from it (the run's ``sample`` section): :meth:`sample`
    draws so unless told otherwise, and rollouts that roll the model out during training draw the
    same way. ``config`` is the whole experiment config of a model built from one.
    """

    backbone: Backbone
    generator: StateGenerator
    decoder: PixelDecoder
    rollout: RolloutApproximator

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        image_size: int,
        channels: int,
        num_classes: int,
        sampling: SampleConfig = SampleConfig(),
    ):
        super().__init__()
        if image_size % cfg.patch_size:
            raise ConfigError([("model.patch_size", f"{cfg.patch_size} does not divide data.image_size {image_size}; "
                                                    "choose a patch size that does")])
        self.cfg, self.sampling = cfg, sampling
        self.config: ExperimentConfig | None = None
        self.image_size, self.channels, self.num_classes = image_size, channels, num_classes
        side = image_size // cfg.patch_size
        self.grid = (side, side)
        self.seq_len = side * side
        self.token_dim = channels * cfg.patch_size**2
        self.decoder = build(cfg.decoder, token_dim=self.token_dim, patch_size=cfg.patch_size, channels=channels)
        self.backbone = build(
            cfg.backbone, token_dim=self.token_dim, seq_len=self.seq_len, num_classes=num_classes, grid=self.grid
        )
        self.generator = build(cfg.generator, state_dim=self.decoder.state_dim, cond_dim=self.backbone.width,
                               state_bound=self.decoder.state_bound)
        self.rollout = build(cfg.rollout)

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> ARModel:
        """The model an experiment config describes, sampling with its ``sample`` section."""
        data = cfg.data
        model = cls(cfg.model, image_size=data.image_size, channels=data.channels, num_classes=data.num_classes,
                    sampling=cfg.sample)
        model.config = cfg
        return model

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.parameters()).device

    @property
    def null_class(self) -> int:
        return self.num_classes

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, p*p*C), raster order, each token laid out (p, p, C)."""
        p, (gh, gw) = self.cfg.patch_size, self.grid
        x = images.reshape(images.shape[0], self.channels, gh, p, gw, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(images.shape[0], self.seq_len, self.token_dim)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, p*p*C) -> (B, C, H, W); the inverse of :meth:`patchify`."""
        p, (gh, gw) = self.cfg.patch_size, self.grid
        x = tokens.reshape(tokens.shape[0], gh, gw, p, p, self.channels)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(tokens.shape[0], self.channels, gh * p, gw * p)

    def forward(self, images: torch.Tensor, labels: torch.Tensor, step: int = 0) -> Losses:
        """The training loss (what DistributedDataParallel calls)."""
        return self.loss(images, labels, step)

    def loss(self, images: torch.Tensor, labels: torch.Tensor, step: int = 0, check: Check | None = None) -> Losses:
        """Head loss on the rollout's inputs plus the decoder's reconstruction loss.

        ``check(component, output)``, if given, sees each component's output in order.
        """
        check = check or (lambda component, output: output)
        x = self.patchify(images)
        z = check("decoder.encode", self.decoder.encode(x))
        target = z if self.cfg.head_grad_to_encoder else z.detach()
        inputs = check("rollout", self.rollout(x, z, labels, model=self, step=step))
        h = check("backbone", self.backbone(inputs[:, :-1], self.drop_classes(labels)))
        head = check("generator.loss", self.generator.loss(h, target).mean())
        reconstruction = check("decoder.reconstruction_loss", self.decoder.reconstruction_loss(x))
        return Losses(head + self.cfg.rec_weight * reconstruction, head, reconstruction)

    @torch.no_grad()
    def first_non_finite(self, images: torch.Tensor, labels: torch.Tensor, step: int = 0) -> str | None:
        """Recompute the loss and name the first component whose output is not finite."""

        class Found(Exception):
            pass

        def check(component: str, output: torch.Tensor) -> torch.Tensor:
            if not torch.isfinite(output).all():
                raise Found(component)
            return output

        try:
            self.loss(images, labels, step, check)
        except Found as found:
            return str(found)
        return None

    def drop_classes(self, labels: torch.Tensor) -> torch.Tensor:
        """In training, replace each label by the null class with probability ``class_dropout``."""
        if not self.training or self.cfg.class_dropout == 0:
            return labels
        drop = torch.rand(labels.shape, device=labels.device) < self.cfg.class_dropout
        return torch.where(drop, torch.full_like(labels, self.null_class), labels)

    @torch.no_grad()
    def sample_tokens(
        self,
        labels: torch.Tensor,
        options: SampleConfig | None = None,
        *,
        rng: Generators = None,
        prefix: torch.Tensor | None = None,
        prefix_lengths: torch.Tensor | None = None,
        length: int | None = None,
        cached: bool = True,
    ) -> torch.Tensor:
        """Generate pixel tokens (B, length, token_dim) one at a time with the KV cache.

        ``prefix`` (B, k, token_dim) is read as given and the rest, up to ``length`` tokens (all
        ``seq_len`` by default), is generated; ``prefix_lengths`` (B,), each at most k, lets each
        row read its own number of prefix tokens and generate from there. The prefix all rows
        share is read in one parallel pass. With guidance, conditional and null rows run as one
        batch. ``cached=False`` reads the whole sequence again for every token instead of using
        the cache: the same samples, for checking the cache and measuring what it saves.
        ``options`` default to the model's :attr:`sampling`.
        """
        options = options or self.sampling
        guided = options.cfg_scale != 1.0
        rows = torch.cat([labels, torch.full_like(labels, self.null_class)]) if guided else labels

        def for_rows(x: torch.Tensor) -> torch.Tensor:  # the conditional rows' tokens, for the null rows too
            return torch.cat([x] * (1 + guided))

        length = self.seq_len if length is None else length
        given = 0 if prefix is None else prefix.shape[1]
        shared = min(given if prefix_lengths is None else int(prefix_lengths.min()), length)
        tokens = [] if prefix is None else list(prefix[:, :shared].unbind(1))
        if cached:
            h, cache = self.backbone.start(rows)
            if shared:
                h = self.backbone.prefill(for_rows(prefix[:, :shared]), cache)
        for i in range(shared, length):
            if not cached:
                read = torch.stack(tokens, 1) if tokens else torch.zeros(len(labels), 0, self.token_dim, device=rows.device)
                h = self.backbone(for_rows(read), rows)[:, -1]
            if prefix_lengths is None or i >= given:
                token = self.draw_tokens(h, i, options, rng, guided)
            else:  # some rows still read their prefix: only the others draw
                token, drawing = prefix[:, i], (prefix_lengths.cpu() <= i).nonzero().squeeze(1)
                if len(drawing):
                    drawing = drawing.to(token.device)
                    drawn = self.draw_tokens(h, i, options, rng, guided, rows=drawing)
                    token = token.index_copy(0, drawing, drawn.to(token.dtype))
            tokens.append(token)
            if cached and i + 1 < length:
                h = self.backbone.step(for_rows(token), cache)
        return torch.stack(tokens, 1)

    def draw_tokens(
        self, h: torch.Tensor, position: int, options: SampleConfig, rng: Generators, guided: bool,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The tokens at ``position`` drawn from ``h`` (guided: conditional rows, then null rows),
        for the batch rows ``rows`` only (all by default): only they run the head."""
        h_cond, h_uncond = h.chunk(2) if guided else (h, None)
        if rows is not None:
            h_cond, h_uncond = h_cond[rows], None if h_uncond is None else h_uncond[rows]
            if rng is not None and not isinstance(rng, torch.Generator):
                rng = [rng[r] for r in rows.tolist()]
        z = self.generator.sample(
            h_cond,
            temperature=options.temperature,
            steps=options.steps,
            rng=rng,
            cfg_scale=self.guidance_at(position, options),
            h_uncond=h_uncond,
        )
        return self.states_to_tokens(z)

    def compile_sampling(self, mode: str) -> None:
        """Compile the backbone's decoding step and the head's sampling network in place with
        torch.compile ``mode`` (``sample.compile``; "off" leaves them eager): for a model that samples."""
        if mode == "off":
            return
        compiler = os.environ.get("CXX", "g++")  # what inductor builds its CPU kernels with
        if not next(self.parameters()).is_cuda and shutil.which(compiler) is None:
            raise PrakitError(f"sample.compile = {mode!r} on the CPU builds C++ kernels, and the compiler "
                              f"{compiler!r} is not on the PATH: install it (or name one in $CXX), "
                              'or set sample.compile = "off"')
        self.backbone.compile_decoding(mode)
        self.generator.compile_sampling(mode)

    def states_to_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """Generated states -> the pixel tokens fed back: projected onto the decoder's state set,
        decoded and clamped to [-1, 1], the range of every token the backbone trains on."""
        return self.decoder.decode(self.decoder.project(z)).clamp(-1, 1)

    def guidance_at(self, position: int, options: SampleConfig) -> float:
        """The guidance scale at ``position``: constant, or rising linearly from 1 (MAR)."""
        if options.cfg_schedule == "constant":
            return options.cfg_scale
        return 1.0 + (options.cfg_scale - 1.0) * position / self.seq_len

    def sample(
        self, classes: Sequence[int] | torch.Tensor, options: SampleConfig | None = None, *, rng: Generators = None,
        pil: bool = False, **changes: Any,
    ) -> torch.Tensor | list[Image.Image]:
        """Images of ``classes`` (class ids, a list or a tensor on any device): (B, H, W, C) uint8
        on the model's device, or with ``pil`` a list of PIL images.

        They are drawn with ``options``, by default the model's :attr:`sampling` (a run's ``sample``
        section), with ``changes`` to its fields (``cfg_scale=4.0, temperature=0.9``). Image i is
        seeded by (``seed``, i), as ``prakit sample`` seeds the i-th image of a store, unless ``rng``
        gives one torch generator per image.
        """
        options = with_options(options or self.sampling, changes, name=str)
        labels = torch.as_tensor(classes, dtype=torch.long).reshape(-1)
        self.check_classes(labels.tolist())
        if rng is None:
            rng = sample_generators(options.seed, range(len(labels)))
        images = to_uint8(self.unpatchify(self.sample_tokens(labels.to(self.device), options, rng=rng)))
        if not pil:
            return images
        return [Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image) for image in images.cpu().numpy()]

    def check_classes(self, classes: Sequence[int]) -> None:
        """Refuse a class id the model has no embedding for."""
        for c in classes:
            if not 0 <= c < self.num_classes:
                raise PrakitError(f"class ids must be in 0..{self.num_classes - 1} (the model's data.num_classes "
                                  f"is {self.num_classes}), got {c}")


def build(cfg: ComponentConfig, **deps) -> nn.Module:
    """Build a model component; one that raises while being built is a ConfigError naming it."""
    try:
        return registry.build(cfg, **deps)
    except PrakitError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin may raise anything for a config it cannot build
        raise ConfigError([(f"model.{cfg.kind}", f"{cfg.name!r} cannot be built with this config: {exc}")]) from None


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> (B, H, W, C) uint8."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round()
    return pixels.to(torch.uint8).permute(0, 2, 3, 1)


def parameter_counts(model: ARModel) -> dict[str, int]:
    """Parameters per component and in total."""
    counts = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name in MODEL_KINDS
    }
    counts["total"] = sum(counts.values())
    return counts
