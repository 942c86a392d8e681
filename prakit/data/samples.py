"""A store for generated images, in the format of a prepared store, filled batch by batch.

Sample ``i`` goes to row ``i``, so writing a batch again cannot duplicate or shift anything.
Each write replaces the shard files it touches atomically (zarr writes a temporary file and
renames it) and only then records its indices in that shard's progress record: after a kill,
a batch is either recorded or written again. Shard ``s`` belongs to rank ``s % world_size``,
so ranks sampling in parallel never write the same file; whichever rank records the last
shard finishes the store.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import zarr

from prakit.config.io import changes
from prakit.data import journal
from prakit.data.digest import MODULUS, digest_sum
from prakit.data.store import (
    SAMPLES_SHARD_BYTES,
    StoreError,
    create_store,
    finish_store,
    is_finished,
    json_data,
    read_attrs,
    runs,
    shard_length,
)
from prakit.io import said_when_full
from prakit.locks import lock_beside

MISMATCH = ("error", "restart", "resume")
#: The attributes that say what made the samples: a store is resumed only with the same ones.
IDENTITY = ("config", "checkpoint", "sampling")


class SampleMismatchError(StoreError):
    """An existing store was made with other attributes; ``problem`` says which, without the fix."""

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}; {fix}")
        self.problem = problem


class SampleStore:
    """Create with :meth:`open`; then ``missing`` -> generate -> ``write`` until ``complete``."""

    def __init__(self, path: Path):
        self.path = path
        group = zarr.open_group(path, mode="r+")
        self.images: zarr.Array = group["images"]
        self.labels: zarr.Array = group["labels"]
        self.num: int = group.attrs["num"]
        self.shard = self.images.shards[0]
        self.num_shards = -(-self.num // self.shard)
        self._written = np.zeros(self.num, bool)
        self._totals = [0] * self.num_shards
        for s in range(self.num_shards):
            self._load(s)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        num: int,
        image_shape: Sequence[int],
        attrs: dict[str, Any],
        on_mismatch: str = "error",
        shard: int | None = None,
    ) -> SampleStore:
        """Create the store at ``path``, or resume it.

        ``attrs`` (JSON data) is recorded in the store; its ``IDENTITY`` entries say what made the
        samples: the resolved experiment config under ``"config"``, the checkpoint under
        ``"checkpoint"``, the sampling options that change the images under ``"sampling"``. An
        existing store made for another ``num``, ``image_shape`` or identity is refused unless
        ``on_mismatch`` is ``"restart"`` (delete it and start over) or, when only the identity
        differs, ``"resume"`` (keep its samples and record the new attrs).
        """
        if on_mismatch not in MISMATCH:
            raise ValueError(f"on_mismatch must be one of {MISMATCH}, got {on_mismatch!r}")
        path = Path(path)
        image_shape = tuple(int(n) for n in image_shape)
        wanted = json_data({"num": num, "image_shape": image_shape, **{key: attrs.get(key) for key in IDENTITY}})
        if path.exists():
            stored = read_attrs(path)
            if stored.get("kind") != "samples":
                raise StoreError(f"{path} exists and is not a sample store; choose another path")
            differ = [key for key in wanted if stored.get(key) != wanted[key]]
            if differ and on_mismatch == "restart":
                shutil.rmtree(path)
            elif differ and set(differ) <= set(IDENTITY) and on_mismatch == "resume":
                zarr.open_group(path, mode="r+").attrs.update(json_data(attrs))
            elif differ:
                hint = " or on_mismatch='resume' to keep its samples" if set(differ) <= set(IDENTITY) else ""
                changes = differences({key: stored.get(key) for key in differ}, {key: wanted[key] for key in differ})
                more = f"; and {len(changes) - 3} more" if len(changes) > 3 else ""
                raise SampleMismatchError(
                    f"{path} holds samples made with another {' and '.join(differ)} ({'; '.join(changes[:3])}{more})",
                    f"pass on_mismatch='restart' to delete them and start over{hint}, or choose another path",
                )
        if not path.exists():
            shard = shard or shard_length(image_shape, num, SAMPLES_SHARD_BYTES)
            _create_once(path, count=num, image_shape=image_shape, shard=shard,
                         attrs={**attrs, "kind": "samples", **wanted})
        store = cls(path)
        if not store.complete:
            store._finish()  # in case every shard was recorded but the finishing rank was killed
        return store

    @property
    def complete(self) -> bool:
        """Whether every sample is written and the store is finished (readable by ``open_store``)."""
        return is_finished(self.path)

    @property
    def written(self) -> int:
        """Samples recorded as written by this process's view of the progress records."""
        return int(self._written.sum())

    def missing(self, batch: int, *, rank: int = 0, world_size: int = 1) -> list[list[int]]:
        """The indices of this rank's shards still to write, in lists of at most ``batch``
        that never cross a shard (each write then rewrites one shard file)."""
        out = []
        for s in range(rank, self.num_shards, world_size):
            start = s * self.shard
            todo = start + np.flatnonzero(~self._written[start:start + self.shard])
            out += [todo[i:i + batch].tolist() for i in range(0, len(todo), batch)]
        return out

    def write(self, indices: Sequence[int], images: np.ndarray, labels: Sequence[int]) -> None:
        """Write generated ``images`` (n, H, W, C) uint8 with their ``labels`` at ``indices``."""
        indices = np.asarray(indices, dtype=np.int64)
        images, labels = np.asarray(images), np.asarray(labels, dtype=np.int64)
        shape = (len(indices), *self.images.shape[1:])
        if images.dtype != np.uint8 or images.shape != shape or labels.shape != (len(indices),):
            raise StoreError(f"expected uint8 images of shape {shape} and {len(indices)} labels, got "
                             f"{images.dtype} images of shape {images.shape} and labels of shape {labels.shape}")
        if len(np.unique(indices)) != len(indices) or (len(indices) and not 0 <= indices.min() <= indices.max() < self.num):
            raise StoreError(f"indices must be distinct and in [0, {self.num})")
        if self._written[indices].any():
            raise StoreError(f"samples {indices[self._written[indices]].tolist()[:10]} are already written; "
                             "write only what missing() lists")
        with said_when_full(self.path, "the samples written before are kept, and a rerun draws the rest"):
            self._write(indices, images, labels)

    def _write(self, indices: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
        for s in np.unique(indices // self.shard):
            rows = np.flatnonzero(indices // self.shard == s)
            rows = rows[np.argsort(indices[rows])]
            for at, n in runs(indices[rows]):
                run, start = rows[at:at + n], int(indices[rows[at]])
                self.images[start:start + n] = images[run]
                self.labels[start:start + n] = labels[run]
                self._totals[s] = (self._totals[s] + digest_sum(start, images[run], labels[run])) % MODULUS
            self._written[indices[rows]] = True
            self._record(s)
        if any(self._shard_done(s) for s in np.unique(indices // self.shard)):
            self._finish()

    def _rows(self, s: int) -> slice:
        return slice(s * self.shard, min((s + 1) * self.shard, self.num))

    def _shard_done(self, s: int) -> bool:
        return bool(self._written[self._rows(s)].all())

    def _load(self, s: int) -> None:
        """Take shard ``s``'s progress record (possibly written by another rank) into this view."""
        record = journal.read(self.path, _record_name(s), {"done": list, "total": str}) or {"done": [], "total": "0"}
        for start, stop in record["done"]:
            self._written[start:stop] = True
        self._totals[s] = int(record["total"], 16)

    def _record(self, s: int) -> None:
        rows = self._rows(s)
        written = np.flatnonzero(self._written[rows]) + rows.start
        done = [(int(written[at]), int(written[at]) + n) for at, n in runs(written)]
        journal.write(self.path, _record_name(s), {"done": done, "total": f"{self._totals[s]:x}"})

    def _finish(self) -> None:
        """Finish the store if every shard is recorded as written (other ranks' records re-read)."""
        for s in range(self.num_shards):
            if not self._shard_done(s):
                self._load(s)
        if not self._written.all():
            return
        attrs = read_attrs(self.path)
        class_names = attrs.get("class_names") or [str(c) for c in range(int(self.labels[:].max()) + 1)]
        finish_store(self.path, count=self.num, total=sum(self._totals), attrs={"class_names": class_names})


def _create_once(path: Path, **store: Any) -> None:
    """Create the store at ``path`` unless another process does first: processes sampling shards
    of one store start together, and exactly one creation takes the name (an atomic rename)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    create_store(temporary, **store)
    try:
        temporary.rename(path)
    except OSError:  # another process created it: use theirs
        if not path.exists():
            raise
        shutil.rmtree(temporary)


def differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``KEY: A in the store, B now`` for each flattened key whose value differs."""
    return [f"{key}: {json.dumps(a)} in the store, {json.dumps(b)} now" for key, (a, b) in changes(stored, wanted).items()]


def writer_lock(path: Path, shard: int, shards: int) -> Path:
    """The lock file (:mod:`prakit.locks`) a process holds while it fills its shard of the store ``path``:
    beside the store, which a restart deletes and recreates."""
    return lock_beside(path, f"shard-{shard}-of-{shards}")


def _record_name(shard: int) -> str:
    return f"shard-{shard:06d}"
