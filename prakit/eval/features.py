"""Features of a set of images under a feature network: extracted once, streamed, and cached.

A set of images (a store, or the images of a reference file) is read in batches, so memory
stays bounded however many images there are; the features are written straight into
memory-mapped ``.npy`` files. They are cached beside the images, in ``<images>.features/``
(or under ``$PRAKIT_FEATURE_CACHE``), in one folder per (network fingerprint, image count) whose
``meta.json`` records the images' content fingerprint: a changed set of images is extracted
again, an unchanged one never is. A network that gives spatial features (Inception's, for sFID)
gives them in the same pass, and they are cached beside the others. FID, sFID, KID, the Inception
score and precision/recall of one evaluation therefore share one pass over the images.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Protocol

import attrs
import numpy as np
import torch

from prakit.components import FeatureNetwork
from prakit.errors import PrakitError
from prakit.io import DamagedFileError, atomic_folder, read_json
from prakit.locks import making
from prakit.progress import Progress

CACHE_ENV = "PRAKIT_FEATURE_CACHE"
#: What a feature network's pass gives, in the order it returns them; each is cached as ``<name>.npy``.
OUTPUTS = ("features", "logits", "spatial")


class Images(Protocol):
    """A fixed set of labelled uint8 images that features can be extracted from."""

    path: Path
    fingerprint: str  # changes whenever any image or label does

    def __len__(self) -> int: ...

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images (n, H, W, C) uint8 and labels (n,) of ``indices`` (sorted, ascending)."""


@attrs.frozen(eq=False)
class Features:
    """Features (N, D) float32, logits (N, K) or None, labels (N,) and spatial features (N, S) or
    None of N images."""

    features: np.ndarray
    logits: np.ndarray | None
    labels: np.ndarray
    network: str  # the network's fingerprint
    spatial: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.features)


@attrs.frozen(eq=False)
class Moments:
    """Mean and covariance (ddof 1, float64) of N feature vectors: what FID compares."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int


#: The fewest images feature moments (a covariance) can be taken over.
MIN_IMAGES = 2


def moments(features: np.ndarray, chunk: int = 8192, *, of: str = "the features", fix: str = "use more images") -> Moments:
    """The mean and covariance of ``features`` in float64, read ``chunk`` rows at a time; fewer
    than :data:`MIN_IMAGES` rows are an error saying what they are ``of`` and the ``fix``."""
    n, dim = features.shape
    if n < MIN_IMAGES:
        raise PrakitError(f"{of}: feature moments need at least {MIN_IMAGES} images, got {n}; {fix}")
    total, outer = np.zeros(dim), np.zeros((dim, dim))
    for start in range(0, n, chunk):
        block = np.asarray(features[start:start + chunk], dtype=np.float64)
        total += block.sum(0)
        outer += block.T @ block
    mu = total / n
    return Moments(mu, (outer - n * np.outer(mu, mu)) / (n - 1), n)


def spread(length: int, count: int | None) -> np.ndarray:
    """``count`` indices spread evenly over ``range(length)`` (all of them if count is None or larger),
    so a subset of a store ordered by class still covers every class."""
    if count is None or count >= length:
        return np.arange(length)
    return np.arange(count) * length // count


def held_out_split(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of ``range(count)``, sorted: a seeded random ``fraction`` (at least one) held out."""
    order = np.random.default_rng(seed).permutation(count)
    test = order[: max(1, round(fraction * count))]
    return np.sort(order[len(test):]), np.sort(test)


def cache_folder(images: Images) -> Path:
    """Where the features of ``images`` are cached."""
    root = os.environ.get(CACHE_ENV)
    name = f"{images.path.name}.features"
    return Path(root) / f"{images.fingerprint[:16]}-{name}" if root else images.path.with_name(name)


def cached_features(
    images: Images,
    network: FeatureNetwork,
    name: str,
    *,
    count: int | None = None,
    spatial: bool = False,
    batch_size: int = 100,
    device: torch.device | None = None,
    progress: bool = False,
) -> Features:
    """The features of ``count`` images spread over ``images`` (all by default) under ``network``
    (registered as ``name``), from the cache or extracted into it; with ``spatial``, their spatial
    features too (a cache from before spatial features were kept is extracted again)."""
    if spatial and not network.num_spatial:
        raise PrakitError(f"the feature network {name!r} gives no spatial features (sFID needs them): "
                          "use one that does, such as inception")
    indices = spread(len(images), count)
    fingerprint = network.fingerprint()
    folder = cache_folder(images) / f"{name}-{fingerprint[:12]}-n{len(indices)}"
    meta = {"images": images.fingerprint, "network": fingerprint, "count": len(indices), "of": len(images)}
    with making(folder):  # jobs sharing a reference extract it once
        if _read_meta(folder) != meta or (spatial and not (folder / "spatial.npy").exists()):
            _extract_into(folder, meta, images, indices, network, batch_size, device, progress, name)
    return _load(folder, fingerprint)


def extract(
    images: Images,
    network: FeatureNetwork,
    indices: np.ndarray,
    *,
    batch_size: int = 100,
    device: torch.device | None = None,
    progress: bool = False,
    desc: str = "features",
) -> Iterator[tuple[slice, dict[str, np.ndarray], np.ndarray]]:
    """``(rows, outputs, labels)`` batch by batch, the next batch read while this one runs: ``outputs``
    holds the ``features``, and the ``logits`` and ``spatial`` features where the network gives them."""
    device = device or torch.device("cpu")
    network = network.to(device).eval()
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    bar = Progress(desc, len(indices), unit="images", enabled=progress)
    with ThreadPoolExecutor(1, thread_name_prefix="prakit-features") as reader:
        pending = reader.submit(images.read, batches[0]) if batches else None
        start = 0
        for i, batch in enumerate(batches):
            pixels, labels = pending.result()
            if i + 1 < len(batches):
                pending = reader.submit(images.read, batches[i + 1])
            x = torch.from_numpy(np.ascontiguousarray(pixels)).to(device)
            with torch.no_grad():
                outputs = network.forward_with_spatial(x) if network.num_spatial else network(x)
            named = {key: _numpy(value) for key, value in zip(OUTPUTS, outputs) if value is not None}
            yield slice(start, start + len(batch)), named, np.asarray(labels)
            start += len(batch)
            bar.update(len(batch))
    bar.close()


def _numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().float().cpu().numpy()


def _extract_into(folder: Path, meta: dict, images: Images, indices: np.ndarray, network: FeatureNetwork,
                  batch_size: int, device, progress: bool, name: str) -> None:
    """Extract into a folder that replaces ``folder`` whole: a kill leaves the old cache or none."""
    with atomic_folder(folder) as tmp:
        n = len(indices)
        widths = dict(zip(OUTPUTS, (network.num_features, network.num_logits, network.num_spatial)))
        arrays = {key: np.lib.format.open_memmap(tmp / f"{key}.npy", "w+", np.float32, (n, width))
                  for key, width in widths.items() if width}
        labels = np.empty(n, np.int64)
        for rows, outputs, y in extract(images, network, indices, batch_size=batch_size, device=device,
                                        progress=progress, desc=f"{name} features of {images.path.name}"):
            for key, values in outputs.items():
                arrays[key][rows] = values
            labels[rows] = y
        for array in arrays.values():
            array.flush()
        del arrays
        np.save(tmp / "labels.npy", labels)
        (tmp / "meta.json").write_text(json.dumps(meta))


def _read_meta(folder: Path) -> dict | None:
    """What the cache in ``folder`` was extracted from; None where there is none, or it is damaged
    (the features are then extracted again: a cache is redone, never repaired)."""
    try:
        return read_json(folder / "meta.json", "extract the features again")
    except (FileNotFoundError, NotADirectoryError, DamagedFileError):
        return None


def _load(folder: Path, fingerprint: str) -> Features:
    def optional(key: str) -> np.ndarray | None:
        path = folder / f"{key}.npy"
        return np.load(path, mmap_mode="r") if path.exists() else None

    return Features(features=np.load(folder / "features.npy", mmap_mode="r"), logits=optional("logits"),
                    labels=np.load(folder / "labels.npy"), network=fingerprint, spatial=optional("spatial"))
