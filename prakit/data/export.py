"""Stores out to other formats: the ADM evaluation suite's npz, and PNG grids."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from prakit.data.store import open_store
from prakit.errors import PrakitError
from prakit.io import atomic_file


def export_npz(store_path: str | os.PathLike, npz_path: str | os.PathLike) -> Path:
    """Write a store as the npz the ADM evaluation suite reads: ``arr_0`` (N, H, W, 3) uint8
    (greyscale repeated to RGB) and ``arr_1`` the labels. Streams shard by shard; atomic."""
    store, npz_path = open_store(store_path), Path(npz_path)
    size = store.image_shape[0]
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": (len(store), size, size, 3)}
    with atomic_file(npz_path, "wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("arr_0.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            for _, images, _ in store.shards():
                f.write(np.ascontiguousarray(np.broadcast_to(images, (*images.shape[:3], 3))).data)
        with archive.open("arr_1.npy", "w") as f:
            np.lib.format.write_array(f, store.all_labels())
    return npz_path


#: Grids show every image at least this many pixels high (small images are enlarged, pixel for pixel).
MIN_CELL = 64


def save_grid(images: np.ndarray, path: str | os.PathLike, rows: int, pad: int = 2, scale: int | None = None) -> Path:
    """Save (N, H, W, C) uint8 images as one PNG of ``rows`` rows, filled row by row; each image
    enlarged ``scale`` times (default: the least integer that makes it MIN_CELL pixels high)."""
    images = np.asarray(images)
    scale = scale or max(1, -(-MIN_CELL // images.shape[1]))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = images.shape
    cols = -(-n // rows)
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.uint8)
    for i, image in enumerate(images):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        grid[top:top + h, left:left + w] = image
    with atomic_file(path, "wb") as f:
        Image.fromarray(grid[..., 0] if c == 1 else grid).save(f, format="PNG")
    return Path(path)


def export_grid(store_path: str | os.PathLike, png_path: str | os.PathLike, *, per_class: int = 8,
                max_classes: int = 10, scale: int | None = None) -> Path:
    """A PNG with one row per class (the first ``max_classes`` classes present) of its first
    ``per_class`` images; a class with fewer images leaves its row's end blank. Rows are as long
    as the longest class shown, so a large ``per_class`` allocates no more than the images read."""
    if per_class < 1 or max_classes < 1:
        raise PrakitError(f"--per-class and --max-classes must be at least 1, got {per_class} and {max_classes}")
    store = open_store(store_path)
    labels = store.all_labels()
    classes = np.unique(labels)[:max_classes]
    picks = [np.flatnonzero(labels == c)[:per_class] for c in classes]
    per_class = max(len(p) for p in picks)
    images, _ = store.read(np.concatenate(picks))
    grid = np.zeros((len(classes) * per_class, *store.image_shape), np.uint8)
    slots = np.concatenate([row * per_class + np.arange(len(p)) for row, p in enumerate(picks)])
    grid[slots] = images
    return save_grid(grid, png_path, rows=len(classes), scale=scale)
