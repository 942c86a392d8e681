"""Training step time on the CPU alone and beside a busy process, by thread setting.

The compared exact rollout (experiments/digits/exact-rollout.toml, the digits-32 comparison's
setting: 16 tokens of 8x8 patches), one batch of 16 random images, timed over ``--steps``
steps after a warm-up step, with: every core's thread (``all``, torch's default and what
training used before), one thread, and what prakit chooses (:func:`prakit.threads.cpu_threads`:
as many threads as cores are idle when training starts). Beside a busy process: a 2-thread
matrix-multiply job, as another user's job on a shared node would be.
Usage: python benchmarks/train_threads.py [--steps 5] [OVERRIDES]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import THREAD_SETTINGS, beside_busy_job, report, training_step, with_threads

from prakit.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "digits" / "exact-rollout.toml"
OVERRIDES = ["data.image_size=32", "model.patch_size=8"]
CPU = torch.device("cpu")


def seconds_per_step(step, steps: int) -> float:
    step(0)  # warm-up
    start = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="of the config, after the setting's")
    args = parser.parse_args()
    overrides = [*OVERRIDES, *args.overrides]
    _, step = training_step(load_config(CONFIG, overrides), 16, CPU)
    every = torch.get_num_threads()
    rows = []
    for busy in (False, True):
        with beside_busy_job(busy):
            for setting in THREAD_SETTINGS:
                threads, seconds = with_threads(setting, lambda: seconds_per_step(step, args.steps))
                rows.append({"beside_2_thread_job": busy, "threads": setting, "threads_used": threads,
                             "s_per_step": seconds})
    alone = next(r["s_per_step"] for r in rows if not r["beside_2_thread_job"] and r["threads"] == "all")
    for row in rows:
        row["vs_all_alone"] = row["s_per_step"] / alone
    report("train_threads_cpu", rows, settings={"config": CONFIG.name, "overrides": overrides, "batch": 16,
                                                 "steps": args.steps, "cores": every})


if __name__ == "__main__":
    main()
