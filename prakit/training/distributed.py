"""Process-group set-up from the usual environment variables (torchrun, or SLURM via submitit)."""

from __future__ import annotations

import gc
import os
import sys
import traceback
from typing import Any

import attrs
import torch
import torch.distributed as dist


@attrs.frozen
class Distributed:
    """Where this process sits: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def all_finite(self, value: torch.Tensor) -> bool:
        """Whether ``value`` is finite on every rank, so that all ranks stop together."""
        finite = torch.isfinite(value).all().float()
        if self.world_size > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite)

    def all_gather(self, value: Any) -> list[Any]:
        """``value`` from every rank, in rank order, on every rank (any picklable value)."""
        if self.world_size == 1:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over all ranks."""
        if self.world_size > 1:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world_size
        return value


def setup() -> Distributed:
    """Join the process group named by RANK/WORLD_SIZE/LOCAL_RANK (NCCL on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return Distributed(rank, world_size, local_rank, device)


def teardown() -> None:
    """Leave the process group, after freeing what still holds it.

    A DDP wrapper sits in a reference cycle, so it and its reducer outlive the training function
    until the cyclic collector runs, possibly only at interpreter exit: there a gloo thread that
    takes the GIL is ended by Python mid C++ and the process aborts ("terminate called without an
    active exception"). So the frames of an exception on its way out drop their locals, and a
    collection runs before the group is destroyed.
    """
    if not dist.is_initialized():
        return
    error = sys.exc_info()[1]
    if error is not None:
        traceback.clear_frames(error.__traceback__)
    gc.collect()
    dist.destroy_process_group()
