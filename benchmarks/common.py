"""Shared output for benchmarks: a printed table and a JSON file under benchmarks/results/
(or the folder in $PRAKIT_BENCHMARK_RESULTS)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

from prakit.io import atomic_write_text
from prakit.progress import format_duration

RESULTS = Path(os.environ.get("PRAKIT_BENCHMARK_RESULTS") or Path(__file__).resolve().parent / "results")


def machine() -> dict[str, str]:
    """Python, torch, the device, and the CPU's model and vector instructions (CPUs of two kinds
    differ in speed, and in the last bits of their floating-point results)."""
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"python": sys.version.split()[0], "torch": torch.__version__, "device": device, "cpu": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": str(os.cpu_count())}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform reports."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown"


def report(name: str, rows: list[dict], settings: dict | None = None, **meta) -> Path:
    """Print ``rows`` as a table; write them with ``settings``, ``meta``, the machine and the command
    to ``results/<name>.json``, and the table to ``results/<name>.md``; remove what
    :func:`run_cases` kept of ``name`` under these settings."""
    columns = [c for c, v in rows[0].items() if not isinstance(v, list)]  # lists: in the JSON only
    cells = [[_fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    command = " ".join(["python", *sys.argv])
    payload = {"benchmark": name, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), "command": command, **(settings or {}), **meta, "rows": rows}
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    markdown = [f"| {' | '.join(columns)} |", f"|{'---|' * len(columns)}", *(f"| {' | '.join(row)} |" for row in cells)]
    atomic_write_text(path.with_suffix(".md"), f"`{command}` on {payload['machine']['device']}, {payload['when']}\n\n"
                      + "\n".join(markdown) + "\n")
    partial_results(name, settings or {}).unlink(missing_ok=True)
    print(f"wrote {path} and {path.with_suffix('.md').name}")
    return path


def run_cases(name: str, cases: Sequence[dict], measure: Callable[..., list[dict]], *,
              settings: dict, cost: Callable[..., float] = lambda **case: 1.0) -> list[dict]:
    """The rows of ``measure(**case)`` for every case, printing progress and an ETA (from the
    ``cost`` of the cases done and of those left). Each finished case is kept in
    ``results/<name>.<digest of settings>.partial.json``: a rerun with the same settings measures
    only the cases missing; ``report`` with the same settings removes the file."""
    partial = partial_results(name, settings)
    done: dict[str, list[dict]] = json.loads(partial.read_text()) if partial.exists() else {}
    keys = [json.dumps(case, sort_keys=True) for case in cases]
    if done:
        print(f"{name}: {sum(k in done for k in keys)} of {len(cases)} cases already measured ({partial.name})")
    left = sum(cost(**case) for case, key in zip(cases, keys) if key not in done)
    spent, measured = 0.0, 0.0
    for i, (case, key) in enumerate(zip(cases, keys), 1):
        if key in done:
            continue
        eta = f", ETA {format_duration(spent / measured * left)}" if measured else ""
        print(f"[{i}/{len(cases)}] {' '.join(f'{k}={v}' for k, v in case.items())}{eta}", flush=True)
        start = time.perf_counter()
        done[key] = measure(**case)
        spent += time.perf_counter() - start
        measured += cost(**case)
        left -= cost(**case)
        atomic_write_text(partial, json.dumps(done))
    return [row for key in keys for row in done[key]]


def partial_results(name: str, settings: dict) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return RESULTS / f"{name}.{digest}.partial.json"


def device_tag(device) -> str:
    """``cpu``, or the GPU's model (``h100``): the suffix of a result's name."""
    import torch

    return torch.cuda.get_device_name(device).split()[-1].lower() if device.type == "cuda" else "cpu"


def image_size(tokens: int, patch: int) -> int:
    """The side of square images of ``patch``-pixel patches that make ``tokens`` tokens."""
    import math

    side = math.isqrt(tokens)
    if side * side != tokens:
        raise SystemExit(f"--lengths: {tokens} is not a square number of tokens")
    return side * patch


def sync(device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a timer measures it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step(cfg, batch: int, device):
    """The model of ``cfg`` (seeded weights) and the training step ``prakit train`` runs
    (:class:`prakit.training.step.TrainingStep`), on one process, on a fixed batch of random images.
    ``step(i)`` runs training step ``i`` (the schedules read it) and returns its
    :class:`~prakit.training.step.StepResult`."""
    import itertools

    import attrs
    import torch

    from prakit.training.distributed import Distributed
    from prakit.training.step import StepResult, TrainingStep

    cfg = attrs.evolve(cfg, train=attrs.evolve(cfg.train, batch_size=batch, grad_accum=1))
    training = TrainingStep.create(cfg, Distributed(rank=0, world_size=1, local_rank=0, device=device)).distribute()
    size, channels = cfg.data.image_size, cfg.data.channels
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, size, size, channels), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, cfg.data.num_classes, (batch,), generator=generator)
    batches = itertools.repeat((images.to(device), labels.to(device)))

    def step(i: int) -> StepResult:
        return training(i, batches)

    return training.model, step


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


#: Another job on the machine: 2 threads multiplying matrices until the benchmark's process ends.
COMPETITOR = ("import os, torch; torch.set_num_threads(2); a = torch.randn(512, 512); parent = os.getppid()\n"
              "while os.getppid() == parent: a @ a")
#: The thread settings a contention benchmark compares: every core's thread (torch's default), one,
#: and what prakit chooses (:func:`prakit.threads.cpu_threads`).
THREAD_SETTINGS = ("all", "1", "prakit")


@contextlib.contextmanager
def beside_busy_job(busy: bool) -> Iterator[None]:
    """Within: with ``busy``, :data:`COMPETITOR` runs beside this process (started a second before)."""
    competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR]) if busy else None
    try:
        time.sleep(1.0 if busy else 0.0)
        yield
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


def with_threads(setting: str, measure: Callable[[], float]) -> tuple[int, float]:
    """``measure()`` on the CPU with the thread ``setting`` (of :data:`THREAD_SETTINGS`): the threads
    used and what it measured; torch's threads are restored after."""
    import torch

    from prakit.threads import cpu_threads

    every = torch.get_num_threads()
    if setting == "prakit":
        with cpu_threads(torch.device("cpu")) as threads:
            return threads, measure()
    threads = every if setting == "all" else 1
    torch.set_num_threads(threads)
    try:
        return threads, measure()
    finally:
        torch.set_num_threads(every)
