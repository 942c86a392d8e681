"""What generated images are compared with: a store of real images, or a reference file.

Two kinds of reference file are read, both ``.npz``:

- the ADM suite's reference batches (``VIRTUAL_imagenet256_labeled.npz``): ``mu`` and ``sigma``,
  the Inception pool3 statistics of the whole dataset, ``mu_s`` and ``sigma_s``, those of its
  spatial features (sFID), and ``arr_0``, 10,000 reference images (precision/recall and KID take
  the features of these images, never mu and sigma);
- prakit's own (``prakit reference STORE --out REF.npz``): ``mu``, ``sigma``, ``features`` and
  ``labels`` under one feature network, named with its fingerprint in the ``prakit`` entry, and
  ``mu_s`` and ``sigma_s`` where the network gives spatial features.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from prakit.components import FeatureNetwork
from prakit.data.store import Store, open_store, runs
from prakit.errors import PrakitError
from prakit.eval.features import Features, Moments, cached_features, moments, spread
from prakit.io import atomic_file

#: Reference images precision/recall compare with, as the ADM suite's reference batches hold.
PR_REFERENCE_IMAGES = 10_000


class StoreImages:
    """The images of a finished store, as :class:`prakit.eval.features.Images`."""

    def __init__(self, store: Store):
        self.store, self.path = store, store.path
        self.fingerprint: str = store.attrs["fingerprint"]

    def __len__(self) -> int:
        return len(self.store)

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.store.read(indices)


class NpzImages:
    """The ``arr_0`` images (N, H, W, 3) uint8 of an npz file, read batch by batch without
    loading the whole array; labels from ``arr_1`` when present, else -1."""

    def __init__(self, path: Path):
        self.path = path
        with zipfile.ZipFile(path) as archive, archive.open("arr_0.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self._offset = f.tell()
        if dtype != np.uint8 or len(shape) != 4 or fortran or shape[-1] not in (1, 3):
            raise PrakitError(f"{path}: arr_0 must hold (N, H, W, 3) uint8 images in C order, "
                              f"got {dtype} of shape {shape}")
        self.count, self.image_shape = shape[0], shape[1:]
        with np.load(path) as data:
            self._labels = data["arr_1"].astype(np.int64) if "arr_1" in data.files else np.full(self.count, -1)

    def __len__(self) -> int:
        return self.count

    @functools.cached_property
    def fingerprint(self) -> str:
        return file_digest(self.path)

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices)
        size = int(np.prod(self.image_shape))
        out = np.empty((len(indices), *self.image_shape), np.uint8)
        with zipfile.ZipFile(self.path) as archive, archive.open("arr_0.npy") as f:
            for at, n in runs(indices):
                f.seek(self._offset + int(indices[at]) * size)
                out[at:at + n] = np.frombuffer(f.read(n * size), np.uint8).reshape(n, *self.image_shape)
        return out, self._labels[indices]


def file_digest(path: Path) -> str:
    """BLAKE2b of a file's bytes, read in 16 MiB pieces."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while piece := f.read(16 * 2**20):
            digest.update(piece)
    return digest.hexdigest()


class Reference(abc.ABC):
    """The reference of an evaluation: feature moments (for FID; of the spatial features, for sFID)
    and reference features (for KID and precision/recall) under a feature network registered as
    ``name``, and real images where it holds them. ``count`` caps the reference images features
    are extracted from; ``extract`` are :func:`prakit.eval.features.cached_features`' options."""

    path: Path
    store: Store | None = None  # the real images, when the reference is a store

    @abc.abstractmethod
    def describe(self) -> dict:
        """What ``eval.json`` records about the reference."""

    @abc.abstractmethod
    def features(self, network: FeatureNetwork, name: str, *, count: int | None, **extract) -> Features: ...

    @abc.abstractmethod
    def moments(self, network: FeatureNetwork, name: str, *, count: int | None, spatial: bool = False,
                **extract) -> Moments:
        """The moments of the features, or with ``spatial`` of the spatial features."""


class StoreReference(Reference):
    """A store of real images: features extracted (and cached) for ``count`` images spread over it."""

    def __init__(self, store: Store):
        self.store, self.path = store, store.path

    def describe(self) -> dict:
        return {"path": str(self.path), "kind": "store", "fingerprint": self.store.attrs["fingerprint"],
                "images": len(self.store)}

    def features(self, network, name, *, count, **extract) -> Features:
        return cached_features(StoreImages(self.store), network, name, count=count, **extract)

    def moments(self, network, name, *, count, spatial=False, **extract) -> Moments:
        features = self.features(network, name, count=count, spatial=spatial, **extract)
        return moments(features.spatial if spatial else features.features)


class FileReference(Reference):
    """A reference ``.npz``: the ADM suite's, or one written by :func:`write_reference`."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with np.load(path) as data:
                self.keys = set(data.files)
                self.meta = json.loads(str(data["prakit"])) if "prakit" in data.files else None
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise PrakitError(f"cannot read the reference file {path} ({exc}); give an .npz file") from None
        if not {"mu", "sigma"} <= self.keys:
            raise PrakitError(f"{path} is not a reference file: it has no 'mu' and 'sigma' "
                              "(make one with `prakit reference STORE --out REF.npz`)")

    def describe(self) -> dict:
        kind = "prakit" if self.meta else "adm"
        return {"path": str(self.path), "kind": kind, **({"made_from": self.meta} if self.meta else {})}

    def _check(self, network: FeatureNetwork, name: str) -> None:
        """Refuse to compare features of one network with statistics of another."""
        if self.meta is None:
            if not network.reads_adm_statistics:
                raise PrakitError(
                    f"{self.path} holds the ADM suite's Inception statistics; evaluating with {name!r} "
                    "cannot use them: set eval.features to inception (with its weights), or use a store "
                    "of real images as the reference"
                )
            return
        if self.meta["network_fingerprint"] != network.fingerprint():
            raise PrakitError(
                f"{self.path} was made with {self.meta['network']!r} (fingerprint {self.meta['network_fingerprint']}); "
                f"this evaluation uses {name!r} (fingerprint {network.fingerprint()}): make the reference again "
                f"with `prakit reference {self.meta['source']} --features {name}`, or evaluate with the network it was made with"
            )

    def moments(self, network, name, *, count, spatial=False, **extract) -> Moments:
        self._check(network, name)
        keys = ("mu_s", "sigma_s") if spatial else ("mu", "sigma")
        if not set(keys) <= self.keys:
            fix = (f"write it again with `prakit reference {self.meta['source']} --out {self.path} --features {name}`"
                   if self.meta else "use the ADM reference batch as published, which has them, or a store of real "
                   "images as the reference")
            raise PrakitError(f"{self.path} holds no spatial statistics (mu_s, sigma_s), which sfid needs: {fix}")
        with np.load(self.path) as data:
            mu, sigma = (np.asarray(data[key], np.float64) for key in keys)
        return Moments(mu, sigma, self.meta["count"] if self.meta else 0)

    def features(self, network, name, *, count, **extract) -> Features:
        self._check(network, name)
        if self.meta is not None:
            with np.load(self.path) as data:
                logits = data["logits"] if "logits" in data.files else None
                return Features(data["features"], logits, data["labels"], self.meta["network_fingerprint"])
        if "arr_0" not in self.keys:
            raise PrakitError(f"{self.path} holds statistics but no reference images (arr_0): KID and "
                              "precision/recall need the images; use the ADM reference batch that includes them")
        return cached_features(NpzImages(self.path), network, name, count=count, **extract)


def open_reference(path: str | os.PathLike) -> Reference:
    """A store of real images (a folder) or a reference ``.npz``."""
    path = Path(path)
    if path.is_dir():
        return StoreReference(open_store(path))
    if not path.exists():
        raise PrakitError(f"no reference at {path}: give a store of real images or a reference .npz")
    return FileReference(path)


def write_reference(reference: StoreReference, network: FeatureNetwork, name: str, out: str | os.PathLike, *,
                    count: int | None = None, **extract) -> Path:
    """Write ``out``: the moments of the features (and of the spatial features, where the network
    gives them) of ``count`` images spread over the store (all by default), and the features,
    logits and labels of at most :data:`PR_REFERENCE_IMAGES` of them. Atomic."""
    features = reference.features(network, name, count=count, spatial=network.num_spatial > 0, **extract)
    stats = moments(features.features)
    keep = spread(len(features), PR_REFERENCE_IMAGES)
    meta = {"network": name, "network_fingerprint": network.fingerprint(), "source": str(reference.path),
            "source_fingerprint": reference.store.attrs["fingerprint"], "count": stats.count}
    arrays = {"mu": stats.mu, "sigma": stats.sigma, "features": np.asarray(features.features[keep]),
              "labels": features.labels[keep], "prakit": np.array(json.dumps(meta))}
    if features.logits is not None:
        arrays["logits"] = np.asarray(features.logits[keep])
    if features.spatial is not None:
        spatial = moments(features.spatial)
        arrays |= {"mu_s": spatial.mu, "sigma_s": spatial.sigma}
    with atomic_file(out, "wb") as f:
        np.savez(f, **arrays)
    return Path(out)
