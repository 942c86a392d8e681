"""CPU threads for sampling and training on a machine that other jobs share.

Both run many small operations, each a parallel region whose threads spin-wait for each other
at its end (libgomp, torch's OpenMP on Linux). On a core another job is using, the spinning
thread takes the time slice its partner needs: measured on 2 cores beside a 2-thread job, 32
quickstart images took 3.2 s with 2 threads and 1.6 s with 1 (0.7 s and 1.0 s alone); for
training, see benchmarks/results/train_threads_cpu.md. So sampling and training use as many
threads as there are idle cores when they start, unless ``OMP_NUM_THREADS`` chooses.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

import torch


def cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user .. steal


def idle_cores(interval_s: float = 0.25) -> int | None:
    """How many of this process's cores were idle over the next ``interval_s`` (None: unknown)."""
    before = cpu_times()
    time.sleep(interval_s)
    after = cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return None
    idle_share = (after[0] - before[0]) / (after[1] - before[1])
    machine = os.cpu_count() or 1
    return round(idle_share * machine)


@contextlib.contextmanager
def cpu_threads(device: torch.device) -> Iterator[int]:
    """Within: torch uses at most as many CPU threads as cores are idle now (at least one); yields
    the number. On a GPU, or when ``OMP_NUM_THREADS`` is set, the threads are left as they are."""
    before = torch.get_num_threads()
    idle = None if device.type != "cpu" or os.environ.get("OMP_NUM_THREADS") else idle_cores()
    threads = before if idle is None else max(1, min(before, idle))
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
