"""Peak CPU memory and time of training steps with and without activation checkpointing.

``train.activation_checkpointing`` keeps only each backbone block's input in the forward pass and
recomputes the block in the backward pass. One model (the config's, default PRA-B at 256x256: 256
tokens of 16x16x3) and one small batch of random images; each setting trains ``--steps`` steps as
``prakit train`` runs them (forward, backward, clipping, AdamW, EMA updates), in a fresh process.
Memory is that process's resident set (Linux, /proc/self/status): ``built_gb`` once the model, its
optimizer and EMAs are built; for each step its peak (``peak_gb``, reset before the step) and
``step_gb``, the peak less the resident set before the step: the step's own memory. The first step
also allocates AdamW's moments (twice the weights), which later steps reuse. Blocks of freed memory
go back to the system at once (``MALLOC_MMAP_THRESHOLD_``), so that a step does not reuse what the
step before it freed. The ratios are checkpointed / plain, per step, from one run; the losses and
gradient norms of the two should agree to float tolerance (``max_loss_difference``).
Usage: python benchmarks/activation_checkpointing.py [--config experiments/imagenet256/pra-B.toml]
       [--batch-size 2] [--steps 2] [overrides ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GB = 2**20  # kB in a GB, as /proc/self/status counts
#: Allocations of 64 kB and more are mapped on their own and returned to the system when freed.
ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
#: The ratio columns: a measurement's checkpointed / plain.
RATIOS = {"peak_gb": "peak_ratio", "step_gb": "step_memory_ratio", "step_s": "time_ratio"}


def resident() -> dict[str, int]:
    """The process's resident set now (``VmRSS``) and its peak (``VmHWM``), in kB."""
    status = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1)) for key in ("VmRSS", "VmHWM")}


def reset_peak() -> None:
    """Set the peak resident set to the current one (Linux 4.0 and later)."""
    Path("/proc/self/clear_refs").write_text("5")


def train(config: str, overrides: list[str], batch: int, steps: int, checkpointing: bool) -> list[dict]:
    """One row per step of training ``config`` on ``batch`` random images in this process."""
    import torch
    from common import training_step

    from prakit.config import load_config

    setting = f"train.activation_checkpointing={str(checkpointing).lower()}"
    cfg = load_config(config, [*overrides, "data.num_workers=0", setting])
    step = training_step(cfg, batch, torch.device("cpu"))[1]
    built = resident()["VmRSS"]
    rows = []
    for i in range(steps):
        before = resident()["VmRSS"]
        reset_peak()
        start = time.perf_counter()
        result = step(i)
        seconds = time.perf_counter() - start
        peak = resident()["VmHWM"]
        rows.append({"checkpointing": checkpointing, "step": i + 1, "built_gb": built / GB, "peak_gb": peak / GB,
                     "step_gb": (peak - before) / GB, "step_s": seconds, "loss": result.losses[0].item(),
                     "grad_norm": result.grad_norm.item()})
    return rows


def measure(config: str, overrides: list[str], batch: int, steps: int, checkpointing: bool) -> list[dict]:
    """:func:`train` in a fresh process: its rows."""
    command = [sys.executable, __file__, "--config", config, "--batch-size", str(batch), "--steps", str(steps),
               "--child", "on" if checkpointing else "off", *overrides]
    done = subprocess.run(command, env={**os.environ, **ALLOCATOR}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the step with checkpointing {'on' if checkpointing else 'off'} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def compare(plain: list[dict], checkpointed: list[dict]) -> None:
    """Give each row the ratios of its memory and time to the plain step's of the same number."""
    for rows in (plain, checkpointed):
        for row, reference in zip(rows, plain):
            row.update({ratio: row[key] / reference[key] if reference[key] else "n/a" for key, ratio in RATIOS.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "experiments" / "imagenet256" / "pra-B.toml"))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="training steps per setting")
    parser.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train(args.config, args.overrides, args.batch_size, args.steps, args.child == "on")))
        return

    import torch
    from common import report

    plain, checkpointed = (measure(args.config, args.overrides, args.batch_size, args.steps, checkpointing)
                           for checkpointing in (False, True))
    compare(plain, checkpointed)
    difference = max(abs(a[key] - b[key]) for a, b in zip(plain, checkpointed) for key in ("loss", "grad_norm"))
    settings = {"config": Path(args.config).name, "batch": args.batch_size, "steps": args.steps,
                "overrides": args.overrides, "threads": torch.get_num_threads()}
    report("activation_checkpointing", plain + checkpointed, settings=settings, allocator=ALLOCATOR,
           max_loss_difference=difference)
    print(f"max difference of the losses and gradient norms: {difference:.3g}")


if __name__ == "__main__":
    main()
