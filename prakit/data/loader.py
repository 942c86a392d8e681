"""Training batches from a store. The batch of each step is a pure function of (seed, step,
rank, world_size): resuming at step k gives exactly the batches an uninterrupted run gives from
step k, whatever the number of workers. Each batch is one batched read, done in a worker process
that opens the store itself."""

from __future__ import annotations

import itertools
import os
from typing import Iterator

import numpy as np
import torch

from prakit.data.store import Store, open_store
from prakit.errors import PrakitError


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """What the loader yields to what the model reads: uint8 (B, H, W, C) -> float (B, C, H, W) in
    [-1, 1] on ``device``."""
    return images.to(device, non_blocking=True).permute(0, 3, 1, 2).float() / 127.5 - 1


class Order:
    """Which samples a rank reads at each step, and which of them it flips.

    An epoch is a seeded permutation of blocks of ``block`` consecutive samples (with chunk-long
    blocks a batch reads whole chunks). Step ``s`` of the epoch takes the next
    ``batch_size * world_size`` samples of that sequence, and rank ``r`` the ``r``-th
    ``batch_size`` of them. The remainder of an epoch is dropped, so ranks never overlap within
    an epoch and all run the same number of steps.
    """

    def __init__(self, count: int, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, block: int = 1):
        if not (batch_size >= 1 and block >= 1 and 0 <= rank < world_size):
            raise PrakitError(f"need batch_size >= 1, block >= 1 and 0 <= rank < world_size, got "
                              f"batch_size={batch_size}, block={block}, rank={rank}, world_size={world_size}")
        self.count, self.batch_size, self.seed = count, batch_size, seed
        self.rank, self.world_size, self.block = rank, world_size, block
        self.steps_per_epoch = count // (batch_size * world_size)
        if not self.steps_per_epoch:
            raise PrakitError(f"the store holds {count} samples, fewer than one global batch "
                              f"({batch_size} per rank x {world_size} ranks); use a smaller batch")
        self._cached: tuple[int, np.ndarray] | None = None

    def epoch(self, step: int) -> int:
        return step // self.steps_per_epoch

    def sequence(self, epoch: int) -> np.ndarray:
        """Every sample index, in the order of ``epoch``."""
        if self._cached is None or self._cached[0] != epoch:
            blocks = np.random.default_rng([self.seed, 0, epoch]).permutation(-(-self.count // self.block))
            order = (blocks[:, None] * self.block + np.arange(self.block)).ravel()
            self._cached = (epoch, order[order < self.count])
        return self._cached[1]

    def plan(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's sample indices at ``step`` and a horizontal-flip flag for each."""
        within = step % self.steps_per_epoch
        start = (within * self.world_size + self.rank) * self.batch_size
        rows = self.sequence(self.epoch(step))[start:start + self.batch_size]
        return rows, np.random.default_rng([self.seed, 1, step, self.rank, self.world_size]).random(self.batch_size) < 0.5


class StepBatches(torch.utils.data.Dataset):
    """A map-style dataset whose item ``step`` is a rank's whole batch at that step.

    The store is opened on first use in each process (workers open their own), and read straight
    into the batch tensor, in shared memory inside a worker so it reaches the trainer uncopied.
    Subclasses may override ``read`` to read the same batches from elsewhere (the benchmark's
    in-memory baseline).
    """

    def __init__(self, path: str | os.PathLike | None, order: Order, hflip: bool, image_shape: tuple[int, int, int]):
        self.path, self.order, self.hflip, self.image_shape = path, order, hflip, tuple(image_shape)
        self._store: tuple[int, Store] | None = None  # (pid, store): a forked worker opens its own

    def read(self, indices: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` with the images of ``indices``; return their labels."""
        if self._store is None or self._store[0] != os.getpid():
            self._store = (os.getpid(), open_store(self.path))
        return self._store[1].read(indices, out)[1]

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        indices, flips = self.order.plan(step)
        images = _batch_tensor((len(indices), *self.image_shape))
        labels = self.read(indices, images.numpy())
        if self.hflip:
            for row in np.flatnonzero(flips).tolist():  # torch flips a row ~20x faster than numpy indexing
                images[row] = images[row].flip(1)
        return images, torch.from_numpy(labels)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_store": None}


def _batch_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty uint8 tensor; inside a DataLoader worker allocated in shared memory, as torch's
    own collate does, so sending it to the trainer copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


def iterate(batches: StepBatches, start_step: int = 0, num_workers: int = 0, pin_memory: bool = False) -> Iterator:
    """``batches[start_step], batches[start_step + 1], ...`` in order, from ``num_workers`` processes."""
    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=itertools.count(start_step), num_workers=num_workers, pin_memory=pin_memory
    )
    return unwrapped(iter(loader))  # made now: starting the workers draws from the global RNG


def unwrapped(batches: Iterator) -> Iterator:
    """``batches``, with a worker's PrakitError raised as its own one-line message (torch prefixes
    the message of an error from a worker with the worker's traceback)."""
    try:
        yield from batches
    except PrakitError as exc:
        lines = str(exc).rstrip().splitlines()
        raise PrakitError(lines[-1].split(": ", 1)[-1] if len(lines) > 1 else str(exc)) from None


class TrainLoader:
    """Infinite training batches from a store: ``(images, labels)``, uint8 (B, S, S, C) and int64 (B,).

    ``batch_size`` is per rank. ``block`` is the run of consecutive samples kept together in the
    shuffle: by default the chunk length for a store prepared with a shuffle seed (its chunks
    are random samples already, and whole chunks read fastest), else 1 (per-sample shuffle).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        hflip: bool = False,
        num_workers: int = 0,
        block: int | None = None,
        pin_memory: bool = False,
    ):
        self.store = open_store(path)
        if block is None:
            block = self.store.chunk_length if self.store.attrs.get("shuffle_seed") is not None else 1
        self.path, self.hflip, self.num_workers, self.pin_memory = path, hflip, num_workers, pin_memory
        self.order = Order(len(self.store), batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, block=block)

    @property
    def steps_per_epoch(self) -> int:
        return self.order.steps_per_epoch

    def batches(self, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of steps ``start_step, start_step + 1, ...``, without end."""
        return iterate(self.step_batches(), start_step, self.num_workers, self.pin_memory)

    def step_batches(self) -> StepBatches:
        """The map-style dataset ``step -> batch`` behind ``batches``."""
        return StepBatches(self.path, self.order, self.hflip, self.store.image_shape)
