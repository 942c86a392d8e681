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
from prakit.eval.features import MIN_IMAGES, Features, Moments, cached_features, moments, spread
from prakit.io import DamagedFileError, atomic_file, check_shape, parse_json

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

    def fits(self, image_shape: tuple[int, int, int], classes: int) -> None:
        """Refuse to compare samples of ``image_shape`` (S, S, C) in ``classes`` classes with
        real images of another shape or class count, where the reference records them."""
        made = self.made_of()
        if made is not None and made != (tuple(image_shape), classes):
            (h, w, c), k = made
            raise PrakitError(
                f"{self.path} is a reference of {h}x{w}x{c} images in {k} classes; the samples are "
                f"{'x'.join(map(str, image_shape))} images in {classes} classes: give a reference made of the "
                "run's own images (its data.store, or `prakit reference` of it)"
            )

    def made_of(self) -> tuple[tuple[int, int, int], int] | None:
        """The image shape and class count of the real images, where known."""
        return None

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

    def made_of(self) -> tuple[tuple[int, int, int], int]:
        return self.store.image_shape, len(self.store.class_names)

    def features(self, network, name, *, count, **extract) -> Features:
        return cached_features(StoreImages(self.store), network, name, count=count, **extract)

    def moments(self, network, name, *, count, spatial=False, **extract) -> Moments:
        features = self.features(network, name, count=count, spatial=spatial, **extract)
        return moments(features.spatial if spatial else features.features, of=f"the reference {self.path}",
                       fix="take them over more of its images (eval.reference_num), or give a larger store")


#: What the ``prakit`` entry of prakit's own reference file holds.
META = {"network": str, "network_fingerprint": str, "source": str, "count": int, "image_shape?": [int],
        "classes?": int}


class FileReference(Reference):
    """A reference ``.npz``: the ADM suite's, or one written by :func:`write_reference`. Its arrays
    are checked before use: a damaged one is a :class:`DamagedFileError` naming the file."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with np.load(path) as data:
                self.keys = set(data.files)
                meta = str(data["prakit"]) if "prakit" in data.files else None
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise PrakitError(f"cannot read the reference file {path} ({exc}); give an .npz file") from None
        if not {"mu", "sigma"} <= self.keys:
            raise PrakitError(f"{path} is not a reference file: it has no 'mu' and 'sigma' "
                              "(make one with `prakit reference STORE --out REF.npz`)")
        fix = f"make it again with `prakit reference STORE --out {path}`"
        self.meta = None if meta is None else check_shape(path, parse_json(path, meta, fix), META, fix, where="prakit")

    def describe(self) -> dict:
        kind = "prakit" if self.meta else "adm"
        return {"path": str(self.path), "kind": kind, **({"made_from": self.meta} if self.meta else {})}

    def made_of(self) -> tuple[tuple[int, int, int], int] | None:
        if self.meta is None or not {"image_shape", "classes"} <= self.meta.keys():  # the ADM suite's, or older
            return None
        return tuple(self.meta["image_shape"]), self.meta["classes"]

    def remake(self, name: str) -> str:
        """How to get this file again, with the features of the network registered as ``name``."""
        if self.meta is None:
            return "download the ADM reference batch again"
        return f"write it again with `prakit reference {self.meta['source']} --out {self.path} --features {name}`"

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

    def _array(self, key: str, name: str) -> np.ndarray:
        try:
            with np.load(self.path) as data:
                return np.asarray(data[key], np.float64)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise DamagedFileError(self.path, f"{key} cannot be read as numbers ({exc})", self.remake(name)) from None

    def _statistics(self, keys: tuple[str, str], width: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The mean and covariance under ``keys``, checked before any linear algebra sees them:
        a vector and a square matrix of the network's ``width``, finite."""
        (m, s), fix = keys, self.remake(name)
        mu, sigma = self._array(m, name), self._array(s, name)
        dim = len(mu) if mu.ndim == 1 else None
        problem = (f"{m} has shape {mu.shape}, not (D,)" if dim is None else
                   f"{s} has shape {sigma.shape}, not the ({dim}, {dim}) of its {m}" if sigma.shape != (dim, dim) else
                   f"{m} holds NaN or infinity" if not np.isfinite(mu).all() else
                   f"{s} holds NaN or infinity" if not np.isfinite(sigma).all() else None)
        if problem:
            raise DamagedFileError(self.path, problem, fix)
        if dim != width:
            raise PrakitError(f"{self.path} holds statistics of {dim} features; the feature network {name!r} gives "
                              f"{width}, so it was made with another network: {fix}")
        return mu, sigma

    def moments(self, network, name, *, count, spatial=False, **extract) -> Moments:
        self._check(network, name)
        keys = ("mu_s", "sigma_s") if spatial else ("mu", "sigma")
        if not set(keys) <= self.keys:
            fix = (self.remake(name) if self.meta else "use the ADM reference batch as published, which has them, "
                   "or a store of real images as the reference")
            raise PrakitError(f"{self.path} holds no spatial statistics (mu_s, sigma_s), which sfid needs: {fix}")
        mu, sigma = self._statistics(keys, network.num_spatial if spatial else network.num_features, name)
        return Moments(mu, sigma, self.meta["count"] if self.meta else 0)

    def features(self, network, name, *, count, **extract) -> Features:
        self._check(network, name)
        if self.meta is not None:
            with np.load(self.path) as data:
                logits = data["logits"] if "logits" in data.files else None
                features = Features(data["features"], logits, data["labels"], self.meta["network_fingerprint"])
            if features.features.shape[1:] != (network.num_features,) or len(features.labels) != len(features):
                raise DamagedFileError(self.path, f"features has shape {features.features.shape} and labels "
                                       f"{features.labels.shape}, not (N, {network.num_features}) and (N,)",
                                       self.remake(name))
            return features
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


def reference_count(store: Store, count: int | None) -> int:
    """The images a reference of ``store`` is taken over (``count``, at most all), or an error if
    they are too few for feature moments."""
    if count is not None and count < MIN_IMAGES:
        raise PrakitError(f"--count must be at least {MIN_IMAGES} (feature moments need {MIN_IMAGES} images), got {count}")
    if len(store) < MIN_IMAGES:
        raise PrakitError(f"{store.path} holds only {len(store)} image(s); a reference needs at least {MIN_IMAGES}: "
                          "give a store of more real images")
    return min(count or len(store), len(store))


def write_reference(reference: StoreReference, network: FeatureNetwork, name: str, out: str | os.PathLike, *,
                    count: int | None = None, **extract) -> Path:
    """Write ``out``: the moments of the features (and of the spatial features, where the network
    gives them) of ``count`` images spread over the store (all by default), and the features,
    logits and labels of at most :data:`PR_REFERENCE_IMAGES` of them. Atomic."""
    store = reference.store
    count = reference_count(store, count)
    features = reference.features(network, name, count=count, spatial=network.num_spatial > 0, **extract)
    stats = moments(features.features)
    keep = spread(len(features), PR_REFERENCE_IMAGES)
    meta = {"network": name, "network_fingerprint": network.fingerprint(), "source": str(reference.path),
            "source_fingerprint": store.attrs["fingerprint"], "count": stats.count,
            "image_shape": list(store.image_shape), "classes": len(store.class_names)}
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
