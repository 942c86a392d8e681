"""``featnet``: a small CNN classifier fitted to the real images' own classes, for small data.

Inception features are meaningless on 16-pixel digits, and its weights cannot always be had.
featnet is trained deterministically on the store of real images it is built with (about a
minute on a CPU), cached beside that store under the store's fingerprint and its own config,
and reports its accuracy on a held-out tenth of the store. Its penultimate layer gives the
features for FID, KID and precision/recall; its logits score the dataset's own classes, which
is what ``class_consistency`` needs.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import ClassVar

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from attrs.validators import gt, lt
from torch import nn

from prakit.plugin_api import (
    FeatureNetwork,
    FeatureNetworkConfig,
    PrakitError,
    Progress,
    StoreImages,
    atomic_file,
    cache_folder,
    exclusive,
    held_out_split,
    spread,
    unstructure,
)

VERSION = 1  # of the architecture and the preprocessing: part of the fingerprint


@attrs.frozen
class FeatNetConfig(FeatureNetworkConfig):
    """``resolution``: larger images are downscaled (area) to it. ``steps`` of AdamW at ``lr``
    with batches of ``batch_size``, on at most ``max_images`` images of the store (a
    ``held_out`` fraction of them kept for the accuracy), from ``seed``."""

    name: ClassVar[str] = "featnet"
    width: int = attrs.field(default=32, validator=gt(0))
    features: int = attrs.field(default=128, validator=gt(1))
    resolution: int = attrs.field(default=32, validator=gt(3))
    steps: int = attrs.field(default=1000, validator=gt(0))
    batch_size: int = attrs.field(default=64, validator=gt(0))
    lr: float = attrs.field(default=2e-3, validator=gt(0.0))
    max_images: int = attrs.field(default=50_000, validator=gt(1))
    held_out: float = attrs.field(default=0.1, validator=[gt(0.0), lt(1.0)])
    seed: int = 0


class FeatNetModel(nn.Module):
    """Four 3x3 convolutions (two with stride 2), GroupNorm and GELU, global average pooling,
    a ``features``-wide hidden layer (the features) and a linear classifier."""

    def __init__(self, channels: int, width: int, features: int, classes: int):
        super().__init__()
        layers, widths = [], [channels, width, 2 * width, 4 * width, 4 * width]
        for i, stride in enumerate((1, 2, 2, 1)):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 3, stride, 1), nn.GroupNorm(8, widths[i + 1]), nn.GELU()]
        self.convs = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.hidden = nn.Sequential(nn.Linear(4 * width, features), nn.GELU())
        self.classifier = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.hidden(self.convs(x))
        return features, self.classifier(features)


class FeatNet(FeatureNetwork):
    """Small CNN classifier fitted (and cached) to the real images; penultimate features, class logits."""

    predicts_labels = True

    @classmethod
    def default_rank(cls) -> int:
        """The default where nothing better is installed: it needs only the real images."""
        return 1

    def __init__(self, cfg: FeatNetConfig, *, store=None, device=None, progress: bool = False):
        super().__init__()
        if store is None:
            raise PrakitError("featnet is fitted to a store of real labelled images and none was given: "
                              "set eval.reference to a store, or check that data.store exists")
        self.cfg, self.source = cfg, str(store.path)
        h, _, self.channels = store.image_shape
        self.resolution = min(h, cfg.resolution)
        self.num_features, self.num_logits = cfg.features, len(store.class_names)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model = FeatNetModel(self.channels, cfg.width, cfg.features, self.num_logits)
        self.accuracy = load_or_fit(self, store, device or torch.device("cpu"), progress)
        self._fingerprint = state_digest(self.model, f"featnet-v{VERSION}-{self.resolution}")

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, C) -> float (B, C, r, r) in [-1, 1], area-resized to the resolution;
        greyscale images are repeated to RGB for a network fitted to RGB."""
        if images.shape[-1] != self.channels:
            if images.shape[-1] != 1:
                raise PrakitError(f"featnet was fitted to {self.source} ({self.channels}-channel images) and cannot "
                                  f"read {images.shape[-1]}-channel images: use a reference of the same kind")
            images = images.expand(*images.shape[:-1], self.channels)
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1
        return F.interpolate(x, size=self.resolution, mode="area") if x.shape[-1] != self.resolution else x

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(self.prepare(images))

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict:
        return {"held_out_accuracy": self.accuracy, "fitted_to": self.source}


def state_digest(module: nn.Module, tag: str) -> str:
    """A 16-byte BLAKE2b of a module's state (names and values) and a tag."""
    digest = hashlib.blake2b(tag.encode(), digest_size=16)
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_or_fit(net: FeatNet, store, device: torch.device, progress: bool) -> float:
    """Load the weights fitted to ``store`` with this config from the cache, or fit and cache them."""
    key = json.dumps({"store": store.attrs["fingerprint"], "config": unstructure(net.cfg), "version": VERSION},
                     sort_keys=True)
    name = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    path = cache_folder(StoreImages(store)) / f"featnet-{name}.pt"
    with exclusive(path):  # jobs sharing a store fit it once
        if path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("key") == key:
                net.model.load_state_dict(saved["model"])
                return float(saved["accuracy"])
        accuracy = fit(net, store, device, progress)
        with atomic_file(path, "wb") as f:
            torch.save({"key": key, "model": net.model.state_dict(), "accuracy": accuracy}, f)
    return accuracy


def fit(net: FeatNet, store, device: torch.device, progress: bool) -> float:
    """Train ``net.model`` on the store from a fixed seed; return its held-out accuracy."""
    cfg = net.cfg
    x, y = load_images(net, store, device)
    train, test = held_out_split(len(y), cfg.held_out, cfg.seed)
    net.model.to(device).train()
    optimizer = torch.optim.AdamW(net.model.parameters(), lr=cfg.lr, weight_decay=0.05)
    rng = np.random.default_rng([cfg.seed, 1])
    bar = Progress("featnet", cfg.steps, unit="steps", enabled=progress)
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        batch = torch.from_numpy(rng.choice(train, min(cfg.batch_size, len(train)), replace=False)).to(device)
        loss = F.cross_entropy(net.model(shift(x[batch], rng))[1], y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.update(1)
    bar.close()
    net.model.eval()
    with torch.no_grad():
        hits = sum(int((net.model(x[rows])[1].argmax(1) == y[rows]).sum())
                   for rows in torch.from_numpy(test).to(device).split(256))
    net.model.cpu()
    return hits / len(test)


def load_images(net: FeatNet, store, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """At most ``max_images`` images spread over the store, prepared, and their labels."""
    indices = spread(len(store), net.cfg.max_images)
    xs, ys = [], []
    for start in range(0, len(indices), 1024):
        images, labels = store.read(indices[start:start + 1024])
        xs.append(net.prepare(torch.from_numpy(images)))
        ys.append(torch.from_numpy(labels))
    return torch.cat(xs).to(device), torch.cat(ys).to(device)


def shift(x: torch.Tensor, rng: np.random.Generator, pad: int = 1) -> torch.Tensor:
    """Translate the whole batch by up to ``pad`` pixels each way (edge padding): light augmentation."""
    dy, dx = rng.integers(0, 2 * pad + 1, 2)
    size = x.shape[-1]
    return F.pad(x, (pad,) * 4, mode="replicate")[..., dy:dy + size, dx:dx + size]
