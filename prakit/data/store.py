"""The prakit image store: one zarr v3 group holding ``images`` (N, S, S, C) uint8 and ``labels``
(N,) int64, chunked along the sample axis only, sharded, blosc/zstd, with consolidated metadata
and the dataset's facts in the group attributes. The format is written down in docs/data.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import zarr
from zarr.buffer.cpu import NDBuffer
from zarr.codecs import BloscCodec, BloscShuffle

from prakit.data import journal
from prakit.data.digest import digest_sum, fingerprint
from prakit.errors import PrakitError
from prakit.io import check_shape, read_json

FORMAT_VERSION = 1
#: Samples per chunk, by measurement (docs/data.md): each read costs ~0.9 ms on top of decoding,
#: so 8 samples per chunk (and per read) bring that below 0.12 ms per image.
CHUNK = 8
DATASET_SHARD_BYTES = 512 * 2**20
SAMPLES_SHARD_BYTES = 64 * 2**20  # sample stores rewrite a shard per batch: keep them small
#: zstd level 3 without shuffling decodes fastest on photographs (shuffles do nothing for bytes).
_IMAGE_CODEC = BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.noshuffle)
_LABEL_CODEC = BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.shuffle)
_READ_THREADS = 8


#: How to get a damaged store back.
_REMAKE = "copy the store again or re-create it"


class StoreError(PrakitError):
    """A store is missing, of another format, unfinished, damaged, or in use with other settings."""


def shard_length(image_shape: Sequence[int], count: int, target_bytes: int) -> int:
    """Samples per shard: about ``target_bytes`` of pixels, a multiple of CHUNK, at most the count (rounded up)."""
    per_chunk = math.prod(image_shape) * CHUNK
    chunks = max(1, min(target_bytes // per_chunk, math.ceil(max(count, 1) / CHUNK)))
    return chunks * CHUNK


def create_store(
    path: str | os.PathLike,
    *,
    count: int,
    image_shape: Sequence[int],
    attrs: dict[str, Any],
    shard: int,
    chunk: int = CHUNK,
) -> zarr.Group:
    """A new store for up to ``count`` samples of ``image_shape`` (S, S, C), with ``attrs``."""
    size, width, channels = image_shape
    if size != width or channels not in (1, 3):
        raise StoreError(f"images must be square with 1 or 3 channels, got shape {tuple(image_shape)}")
    if shard % chunk:
        raise StoreError(f"the shard length ({shard}) must be a multiple of the chunk length ({chunk})")
    group = zarr.open_group(Path(path), mode="w-")
    group.attrs.update({
        "format_version": FORMAT_VERSION, "resolution": size, "channels": channels,
        **json_data(attrs),
    })
    group.create_array(
        "images", shape=(count, *image_shape), dtype="uint8", chunks=(chunk, *image_shape),
        shards=(shard, *image_shape), compressors=_IMAGE_CODEC, fill_value=0,
        config={"write_empty_chunks": True},
    )
    group.create_array("labels", shape=(count,), dtype="int64", chunks=(shard,), compressors=_LABEL_CODEC, fill_value=-1)
    return group


def finish_store(path: str | os.PathLike, *, count: int, total: int, attrs: dict[str, Any]) -> None:
    """Cut the arrays to ``count``, record the count, fingerprint, file sizes and ``attrs``,
    consolidate the metadata and drop the progress record and any temporary files left by killed
    writes. Safe to repeat."""
    path = Path(path)
    _remove_partial_files(path)
    group = zarr.open_group(path, mode="r+")
    images, labels = group["images"], group["labels"]
    images.resize((count, *images.shape[1:]))
    labels.resize((count,))
    group.attrs.update({
        **json_data(attrs),
        "count": count,
        "fingerprint": fingerprint(total, count, images.shape[1:]),
        "files": _data_files(path),
    })
    with warnings.catch_warnings():  # v3 has no consolidation spec yet; the progress folder is not a node
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        warnings.filterwarnings("ignore", message="Object at .* is not recognized", category=UserWarning)
        zarr.consolidate_metadata(path)
    journal.clear(path)


def json_data(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists): how attributes are stored."""
    return json.loads(json.dumps(value))


def _remove_partial_files(path: str | os.PathLike) -> None:
    """Delete the temporary files zarr leaves when a write is killed (``*.partial``)."""
    for partial in Path(path).rglob("*.partial"):
        partial.unlink(missing_ok=True)


def _data_files(path: Path) -> dict[str, int]:
    """Every chunk or shard file of the two arrays and its size, by path relative to the store."""
    return {
        f.relative_to(path).as_posix(): f.stat().st_size
        for array in ("images", "labels")
        for f in sorted((path / array).rglob("*"))
        if f.is_file() and f.name != "zarr.json"
    }


class Store:
    """A finished store, read-only. ``images`` and ``labels`` are the zarr arrays."""

    def __init__(self, path: Path, group: zarr.Group):
        self.path = path
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.images: zarr.Array = group["images"]
        self.labels: zarr.Array = group["labels"]
        self._threads: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a fork gets its own
        self._all_labels: np.ndarray | None = None

    def __len__(self) -> int:
        return self.attrs["count"]

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, {len(self)} x {self.image_shape})"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.attrs["class_names"])

    @property
    def chunk_length(self) -> int:
        return self.images.chunks[0]

    @property
    def shard_length(self) -> int:
        return self.images.shards[0]

    def all_labels(self) -> np.ndarray:
        """Every label, read once and kept in memory (a shard that fails to decode is named)."""
        if self._all_labels is None:
            try:
                self._all_labels = self.labels[:]
            except (ValueError, RuntimeError):  # which shard: read them one at a time
                self._all_labels = np.concatenate([self._shard_labels(start) for start in self._starts()])
        return self._all_labels

    def _starts(self) -> range:
        return range(0, len(self), self.shard_length)

    def _shard_labels(self, start: int) -> np.ndarray:
        with self.reading(start):
            return self.labels[start:start + self.shard_length]

    def class_counts(self) -> np.ndarray:
        """Samples per class, for every class name (a class without samples counts 0)."""
        return np.bincount(self.all_labels(), minlength=len(self.class_names))

    def read(self, indices: Sequence[int] | np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of ``indices`` in one batched read: each run of consecutive indices
        is one slice, decoded straight into ``out`` (allocated if None), the runs concurrently."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"sample indices must lie in [0, {len(self)}), got {indices.min()}..{indices.max()}")
        if out is None:
            out = np.empty((indices.size, *self.image_shape), np.uint8)
        if self._threads is None or self._threads[0] != os.getpid():
            self._threads = (os.getpid(), ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="prakit-read"))

        def fetch(run: tuple[int, int]) -> None:
            at, n = run
            first = int(indices[at])
            with self.reading(first):
                self.images.get_basic_selection(slice(first, first + n), out=NDBuffer.from_numpy_array(out[at:at + n]))

        list(self._threads[1].map(fetch, runs(indices)))
        return out, self.all_labels()[indices]

    def shards(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(start, images, labels)`` for each shard in order: a sequential scan."""
        for start in self._starts():
            with self.reading(start):
                images = self.images[start:start + self.shard_length]
            yield start, images, self._shard_labels(start)

    @contextlib.contextmanager
    def reading(self, first: int) -> Iterator[None]:
        """Turn a shard (of images or labels) that fails to decode into a StoreError naming it: the one
        place a read of a store's arrays reports corruption."""
        try:
            yield
        except (ValueError, RuntimeError) as exc:
            shard = first // self.shard_length
            raise StoreError(
                f"{self.path}: store corrupt at shard {shard} (samples from {shard * self.shard_length}): "
                f"{str(exc).splitlines()[0].rstrip('.') if str(exc) else type(exc).__name__}; "
                "re-create it with `prakit data prepare`"
            ) from None

    def verify(self) -> None:
        """Re-read every sample and check it against the fingerprint; raise StoreError if it differs."""
        total = sum(digest_sum(start, images, labels) for start, images, labels in self.shards())
        if fingerprint(total, len(self), self.image_shape) != self.attrs["fingerprint"]:
            raise StoreError(
                f"{self.path}: the content does not match its fingerprint {self.attrs['fingerprint']}; "
                "the store was modified or damaged: re-create it"
            )


def runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``(position, length)`` of each maximal run of consecutive integers in ``values``, in order."""
    if not len(values):
        return []
    starts = np.flatnonzero(np.diff(values, prepend=values[0] - 2) != 1)
    lengths = np.diff(starts, append=len(values))
    return list(zip(starts.tolist(), lengths.tolist()))


def open_store(path: str | os.PathLike) -> Store:
    """Open a finished store read-only, or raise a StoreError that says what is wrong and what to do."""
    path = Path(path)
    attrs = read_attrs(path)
    if "count" not in attrs:
        what = "sample store: resume the sampling run to finish it" if attrs.get("kind") == "samples" else (
            "preparation: run the same `prakit data prepare` command again to finish it, or delete it to start over")
        raise StoreError(f"{path} is unfinished; it is an interrupted {what}")
    for rel, size in attrs.get("files", {}).items():
        try:
            actual = (path / rel).stat().st_size
        except FileNotFoundError:
            raise StoreError(f"{path} is truncated: {rel} is missing; {_REMAKE}") from None
        if actual != size:
            raise StoreError(
                f"{path} is truncated or damaged: {rel} has {actual} bytes, expected {size}; {_REMAKE}"
            )
    try:
        group = zarr.open_group(path, mode="r")
        store = Store(path, group)
    except (KeyError, ValueError, OSError) as exc:
        raise StoreError(f"{path}: cannot open its arrays ({exc}); the store is damaged, re-create it") from None
    if store.images.shape[0] != attrs["count"] or store.labels.shape != (attrs["count"],):
        raise StoreError(f"{path} is damaged: its arrays do not hold the {attrs['count']} samples it records")
    return store


def is_finished(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a finished store (prepared or sampled to the end)."""
    path = Path(path)
    return path.exists() and "count" in read_attrs(path)


def read_attrs(path: Path) -> dict[str, Any]:
    """The group attributes of a prakit store of this format version, finished or not."""
    if not path.exists():
        raise StoreError(f"no store at {path}; create one with `prakit data prepare`")
    meta = path / "zarr.json"
    if not meta.is_file():
        if (path / ".zgroup").exists() or (path / ".zarray").exists():
            raise StoreError(
                f"{path} is a zarr v2 store; prakit reads zarr v3 stores of format version "
                f"{FORMAT_VERSION}: re-create it with `prakit data prepare`"
            )
        raise StoreError(f"{path} is not a zarr store (no zarr.json); create one with `prakit data prepare`")
    attrs = check_shape(meta, read_json(meta, _REMAKE), {"attributes": dict}, _REMAKE)["attributes"]
    version = attrs.get("format_version")
    if version is None:
        raise StoreError(f"{path} is a zarr store but not a prakit image store (it has no format_version attribute)")
    if version != FORMAT_VERSION:
        older = isinstance(version, int) and version < FORMAT_VERSION
        fix = "re-create it with `prakit data prepare`" if older else "upgrade prakit to read it"
        raise StoreError(
            f"{path} has store format version {version}, {'older' if older else 'newer'} than the version "
            f"{FORMAT_VERSION} this prakit reads; {fix}"
        )
    return attrs


def disk_size(path: str | os.PathLike) -> int:
    """Bytes of all files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
