"""``prepare``: any registered dataset source -> a store; parallel, resumable, deterministic.

Worker processes read and preprocess the items in tasks; the parent takes the results in
source order (or a seeded permutation of it), drops unreadable items with their reason, and
writes one whole shard at a time. After each shard the progress record holds the samples
stored, how far into the order they reach, the items skipped before that point and the folded
digest, so a rerun after a kill continues from there and ends with the same store.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Iterator

import attrs
import numpy as np
import zarr

from prakit import registry
from prakit.components import Dataset
from prakit.config import DataConfig, unstructure
from prakit.data import journal
from prakit.data.digest import MODULUS, content_digests, fold
from prakit.data.preprocess import METHOD, center_crop
from prakit.data.store import (
    CHUNK,
    DATASET_SHARD_BYTES,
    StoreError,
    create_store,
    finish_store,
    is_finished,
    json_data,
    open_store,
    read_attrs,
    shard_length,
)
from prakit.errors import PrakitError
from prakit.kinds import DatasetConfig
from prakit.locks import making
from prakit.progress import Progress

TASK = 32  # items per worker task
_RECORD = "prepare"
_FRESH = {"count": 0, "consumed": 0, "total": "0", "skipped": []}  # the progress of a new store
_SHAPE = {key: type(value) for key, value in _FRESH.items()}  # of the progress record


@attrs.frozen
class Skip:
    """A source item left out of the store, and why."""

    item: int
    reason: str


@attrs.frozen
class Report:
    """What ``prepare`` made; ``format()`` is the summary the CLI prints."""

    path: str
    source: str
    count: int
    items: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]
    skipped: tuple[Skip, ...]
    notes: tuple[str, ...]
    fingerprint: str
    resumed_from: int  # items already done before this call (== items: it was finished already)
    seconds: float

    @property
    def empty_classes(self) -> tuple[str, ...]:
        return tuple(name for name, n in zip(self.class_names, self.class_counts) if n == 0)

    @property
    def items_per_second(self) -> float:
        return (self.items - self.resumed_from) / max(self.seconds, 1e-9)

    def format(self, max_lines: int = 20) -> str:
        size, _, channels = self.image_shape
        lines = [
            f"{self.path}: {self.count:,} images of {size}x{size}x{channels} in {len(self.class_names)} classes "
            f"from {self.items:,} {self.source} items, fingerprint {self.fingerprint}"
        ]
        if self.resumed_from == self.items:
            lines.append("  already finished: nothing to do")
        else:
            resumed = f", resumed after {self.resumed_from:,} items" if self.resumed_from else ""
            lines.append(f"  {self.seconds:.1f} s ({self.items_per_second:,.0f} items/s){resumed}")
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped):,} unreadable item(s):")
            lines += [f"    {s.reason}" for s in self.skipped[:max_lines]]
            if len(self.skipped) > max_lines:
                lines.append(f"    ... and {len(self.skipped) - max_lines:,} more (the store's 'skipped' attribute lists all)")
        if self.empty_classes:
            lines.append(f"  classes without images (their labels stay reserved): {', '.join(self.empty_classes)}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def default_workers() -> int:
    """One worker per CPU this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare(
    dataset_cfg: DatasetConfig,
    out_path: str | os.PathLike,
    *,
    size: int,
    channels: int = 3,
    workers: int | None = None,
    shuffle_seed: int | None = None,
    shard: int | None = None,
    progress: bool = True,
) -> Report:
    """Prepare the dataset ``dataset_cfg`` into a store at ``out_path``, or finish an interrupted one.

    Every image is converted to ``channels`` and brought to ``size`` x ``size`` by the ADM
    centre crop: ``size`` is the only output resolution (dataset configs hold none). With
    ``shuffle_seed`` the samples are stored in a seeded random order (lets the loader read
    whole chunks). ``shard`` is samples per shard (default: about 512 MiB of pixels). Rerunning
    with the same arguments resumes; other arguments on an existing store are an error.
    """
    started = time.perf_counter()
    if size < 1 or channels not in (1, 3):
        raise PrakitError(f"size must be at least 1 and channels 1 or 3, got size={size}, channels={channels}")
    if shard is not None and (shard < 1 or shard % CHUNK):
        raise PrakitError(f"shard must be a positive multiple of {CHUNK} samples, got {shard}")
    if workers is not None and workers < 0:
        raise PrakitError(f"workers must be 0 (none: read in this process) or more, got {workers}")
    out = Path(out_path)
    with making(out):
        return _prepare(dataset_cfg, out, size=size, channels=channels, workers=workers,
                        shuffle_seed=shuffle_seed, shard=shard, progress=progress, started=started)


def _prepare(dataset_cfg, out: Path, *, size, channels, workers, shuffle_seed, shard, progress, started) -> Report:
    dataset = registry.build(dataset_cfg)
    facts = {
        "kind": "dataset",
        "source": unstructure(dataset_cfg),
        "preprocessing": {"method": METHOD, "size": size, "channels": channels},
        "shuffle_seed": shuffle_seed,
        "items": len(dataset),
        "class_names": list(dataset.class_names),
    }
    state = _start(out, facts, (size, size, channels), shard)
    if state is None:
        return _report(out, resumed_from=len(dataset), started=started)
    resumed_from = state["consumed"]
    order = np.arange(len(dataset)) if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(len(dataset))
    tasks = [(p, order[p:p + TASK]) for p in range(state["consumed"], len(dataset), TASK)]
    writer = _ShardWriter(out, state)
    loader = _Loader(dataset, size, channels)
    try:
        with Progress("prepare", len(dataset), initial=resumed_from, unit="images", enabled=progress) as bar:
            for loaded in _ordered_map(loader, tasks, default_workers() if workers is None else workers):
                writer.add(loaded)
                bar.update(loaded.done)
        writer.finish(len(dataset))
        if writer.count == 0:
            reasons = "; ".join(reason for _, _, reason in writer.skipped[:3])
            raise PrakitError(f"no item of the {dataset_cfg.name} source could be read ({reasons})")
    except BaseException:
        if writer.count == 0:  # nothing stored yet: leave nothing that would refuse the corrected command
            shutil.rmtree(out, ignore_errors=True)
        raise
    finish_store(out, count=writer.count, total=writer.total, attrs={
        "skipped": [{"item": item, "reason": reason} for _, item, reason in writer.skipped],
        "notes": list(getattr(dataset, "notes", ())),
    })
    return _report(out, resumed_from=resumed_from, started=started)


def _start(out: Path, facts: dict[str, Any], image_shape: tuple[int, int, int], shard: int | None) -> dict | None:
    """The progress state to continue from: a new store, a resumed one, or None if finished."""
    if not out.exists():
        shard = shard or shard_length(image_shape, facts["items"], DATASET_SHARD_BYTES)
        create_store(out, count=facts["items"], image_shape=image_shape, attrs=facts, shard=shard)
        return dict(_FRESH)
    attrs = read_attrs(out)
    if attrs.get("kind") != "dataset":
        raise StoreError(f"{out} exists and is not a prepared dataset store; choose another output path")
    wanted = json_data(facts)
    differ = [f"{key}: {attrs.get(key)!r} there, {wanted[key]!r} now" for key in wanted if attrs.get(key) != wanted[key]]
    stored_shard = zarr.open_group(out, mode="r")["images"].shards[0]
    if shard is not None and shard != stored_shard:
        differ.append(f"shard: {stored_shard} there, {shard} now")
    if differ:
        raise StoreError(
            f"{out} was prepared with other settings ({'; '.join(differ)}); "
            "rerun with the same settings to resume, or delete it to start over"
        )
    state = journal.read(out, _RECORD, _SHAPE)
    if state is None and "count" in attrs:
        return None
    return state or dict(_FRESH)


def _report(out: Path, *, resumed_from: int, started: float) -> Report:
    store = open_store(out)
    attrs = store.attrs
    counts = store.class_counts()
    return Report(
        path=str(out),
        source=attrs["source"]["name"],
        count=len(store),
        items=attrs["items"],
        image_shape=store.image_shape,
        class_names=store.class_names,
        class_counts=tuple(int(n) for n in counts),
        skipped=tuple(Skip(s["item"], s["reason"]) for s in attrs["skipped"]),
        notes=tuple(attrs["notes"]),
        fingerprint=attrs["fingerprint"],
        resumed_from=resumed_from,
        seconds=time.perf_counter() - started,
    )


@attrs.frozen
class _Loaded:
    """One task's result: the kept rows with their order positions, and the skipped items."""

    done: int
    positions: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    digests: list[bytes]
    skips: list[tuple[int, int, str]]  # (position, item, reason)


class _Loader:
    """Reads and preprocesses the items of a task; unreadable items become skips, not errors."""

    def __init__(self, dataset: Dataset, size: int, channels: int):
        self.dataset, self.size, self.channels = dataset, size, channels

    def __call__(self, task: tuple[int, np.ndarray]) -> _Loaded:
        start, items = task
        num_classes = len(self.dataset.class_names)
        kept, images, labels, skips = [], [], [], []
        for position, item in enumerate(items.tolist(), start):
            try:
                image, label = self.dataset[item]
                image = np.atleast_3d(np.asarray(image))
                if image.dtype != np.uint8 or image.shape[-1] not in (1, 3):
                    raise ValueError(f"the source gave a {image.dtype} image of shape {image.shape}, not (H, W, 1 or 3) uint8")
                if not 0 <= int(label) < num_classes:
                    raise ValueError(f"label {label} is not a class index (0..{num_classes - 1})")
                images.append(center_crop(image, self.size, self.channels))
                labels.append(int(label))
                kept.append(position)
            except Exception as exc:  # noqa: BLE001 - one bad item must not end the run
                reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
                skips.append((position, item, f"item {item}: {reason}"))
        shape = (0, self.size, self.size, self.channels)
        stacked = np.stack(images) if images else np.empty(shape, np.uint8)
        return _Loaded(len(items), np.array(kept, np.int64), stacked, np.array(labels, np.int64),
                       content_digests(stacked, labels), skips)


_worker_loader: _Loader | None = None


def _init_worker(loader: _Loader) -> None:
    global _worker_loader
    _worker_loader = loader


def _run_task(task: tuple[int, np.ndarray]) -> _Loaded:
    return _worker_loader(task)


def _ordered_map(loader: _Loader, tasks: Iterable, workers: int) -> Iterator[_Loaded]:
    """``map(loader, tasks)`` in order, on ``workers`` processes (0: this one), two tasks per worker in flight."""
    if workers == 0:
        yield from map(loader, tasks)
        return
    # forkserver: workers never inherit this process's threads (zarr runs an event-loop thread);
    # the server imports the modules once, so workers start without importing torch each.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        modules = {__name__, type(loader.dataset).__module__} - {"__main__"}
        context.set_forkserver_preload(sorted(modules))
    else:
        context = multiprocessing.get_context("spawn")
    with context.Pool(workers, _init_worker, (loader,)) as pool:
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.apply_async(_run_task, (task,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


class _ShardWriter:
    """Buffers loaded rows in order and writes whole shards, recording progress after each."""

    def __init__(self, path: Path, state: dict[str, Any]):
        self.path = path
        group = zarr.open_group(path, mode="r+")
        self.images, self.labels = group["images"], group["labels"]
        self.shard = self.images.shards[0]
        self.count, self.consumed = state["count"], state["consumed"]
        self.total = int(state["total"], 16)
        self.skipped: list[tuple[int, int, str]] = [tuple(s) for s in state["skipped"]]
        self.buffer: list[_Loaded] = []

    def add(self, loaded: _Loaded) -> None:
        self.skipped += loaded.skips
        self.buffer.append(loaded)
        while sum(len(b.positions) for b in self.buffer) >= self.shard:
            self._commit(self.shard)

    def finish(self, items: int) -> None:
        """Write what is left, and record that every item is done."""
        left = sum(len(b.positions) for b in self.buffer)
        if left:
            self._commit(left)
        self.consumed = items
        self._record()

    def _commit(self, n: int) -> None:
        positions, images, labels, digests = (
            np.concatenate([b.positions for b in self.buffer]),
            np.concatenate([b.images for b in self.buffer]),
            np.concatenate([b.labels for b in self.buffer]),
            [d for b in self.buffer for d in b.digests],
        )
        self.images[self.count:self.count + n] = images[:n]
        self.labels[self.count:self.count + n] = labels[:n]
        self.total = (self.total + fold(self.count, digests[:n])) % MODULUS
        self.count += n
        self.consumed = int(positions[n - 1]) + 1
        self.buffer = [_Loaded(0, positions[n:], images[n:], labels[n:], digests[n:], [])]
        self._record()

    def _record(self) -> None:
        journal.write(self.path, _RECORD, {
            "count": self.count,
            "consumed": self.consumed,
            "total": f"{self.total:x}",
            "skipped": [list(s) for s in self.skipped if s[0] < self.consumed],
        })


def _finished_here(store: str) -> bool:
    """Whether ``store`` is a finished store; False for one another job is making now (it has no
    zarr.json yet), which ``prepare`` waits for and then finds made."""
    try:
        return is_finished(store)
    except StoreError:
        return False  # prepare, holding the store's lock, reads it again and says what is wrong with it


def ensure_store(data: DataConfig) -> None:
    """Prepare ``data.store`` from ``data.source`` unless it is finished (concurrent jobs take
    turns: the first prepares it); check that it fits."""
    if data.source is not None and not _finished_here(data.store):
        prepare(data.source, data.store, size=data.image_size, channels=data.channels, shuffle_seed=0)
    elif not Path(data.store).exists():
        raise PrakitError(
            f"data.store {data.store} does not exist and data.source is not set: "
            f"prepare it with `prakit data prepare`, or set data.source"
        )
    store = open_store(data.store)
    shape = tuple(store.images.shape[1:])
    if shape != (data.image_size, data.image_size, data.channels):
        raise PrakitError(
            f"data.store {data.store} holds images of shape {shape}, the config asks for "
            f"{(data.image_size, data.image_size, data.channels)} (data.image_size, data.channels)"
        )
    if len(store.attrs["class_names"]) > data.num_classes:
        raise PrakitError(
            f"data.store {data.store} has {len(store.attrs['class_names'])} classes, more than "
            f"data.num_classes = {data.num_classes}"
        )
