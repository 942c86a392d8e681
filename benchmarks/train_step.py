"""Training step time of each rollout approximator, as a ratio to teacher forcing.

One model (the config's, default the quickstart's) and one batch of random images; only the
rollout differs. The rollouts take turns, a block of steps each, for several rounds (so a slow
moment of a shared machine hits them all), and each is summarised by its median block. Steps are
numbered from 10,000, so schedules and calibrated sigma are in their steady state; a block spans
``calib_every`` steps, so it includes one calibration. Run at several sequence lengths (16x16,
32x32, 64x64 images of 4x4 patches: 16, 64, 256 tokens) to see what exact rollout costs as the
sequence grows, which is what PRA saves: ``exact_rollout`` is the configuration the digits
comparison trains. Peak memory is measured on CUDA.
An interrupted run, rerun with the same arguments, measures only the lengths missing.
Usage: python benchmarks/train_step.py [--lengths 16,64,256] [--batch-size 16] [--rounds 3] [--block 10]
Goal: pra at most 1.10x teacher forcing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import device_tag, image_size, report, run_cases, sync, training_step

from prakit import registry
from prakit.config import load_config, unstructure
from prakit.run import inference_device

ROOT = Path(__file__).resolve().parents[1]
#: The exact rollout the digits comparison trains (experiments/digits/exact-rollout.toml).
COMPARED_EXACT_ROLLOUT = ROOT / "experiments" / "digits" / "exact-rollout.toml"


def inline_table(component) -> str:
    """A component config as an override's inline TOML table."""
    return "{" + ",".join(f"{key}={json.dumps(value)}" for key, value in unstructure(component).items()) + "}"


#: Settings timed beside every installed rollout at its defaults, by label: their ``model.rollout``
#: override. ``exact_rollout`` is the comparison's (rows roll from their own random prefix to the
#: end of the sequence, each token drawn from the rolled prefix) in place of its defaults;
#: ``exact_rollout (aligned, window 1)`` rolls one token after one prefix length for the whole
#: batch, its cheapest setting.
SETTINGS = {
    "pra (calibrated)": '{name="pra",sigma="calibrated"}',
    "exact_rollout": inline_table(load_config(COMPARED_EXACT_ROLLOUT).model.rollout),
    "exact_rollout (aligned, window 1)": '{name="exact_rollout",window=1,starts="aligned"}',
}


def rollouts() -> dict[str, str]:
    """The rollouts timed, by label: every installed one at its defaults (teacher forcing, the
    ratios' baseline, first; a new rollout shows without an edit here), then :data:`SETTINGS`."""
    names = sorted(registry.list_components("rollout"), key=lambda name: name != "teacher_forcing")
    return {name: f'{{name="{name}"}}' for name in names} | SETTINGS
#: Rollouts too slow for a block of several steps: one step per turn.
ONE_STEP = {"exact_rollout"}
FIRST_STEP = 10_000
GOAL = 1.10  # pra's step time at most this multiple of teacher forcing's


def measure(config: str, overrides: list[str], length: int, batch: int, rounds: int, block: int,
            device: torch.device) -> list[dict]:
    """One row per rollout at ``length`` tokens: median block time, its ratio to teacher forcing."""
    patch = load_config(config, overrides).model.patch_size
    shape = [f"data.image_size={image_size(length, patch)}", "data.num_workers=0"]
    steps = {}
    compared = rollouts()
    for label, rollout in compared.items():
        cfg = load_config(config, [*overrides, *shape, f"model.rollout={rollout}"])
        steps[label] = training_step(cfg, batch, device)[1]
        steps[label](FIRST_STEP - 1)  # warm-up: first-call allocations and one-time work
    times: dict[str, list[float]] = {label: [] for label in compared}
    peaks: dict[str, float] = {}
    for r in range(rounds):
        for label, step in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            n = 1 if label in ONE_STEP else block
            sync(device)
            start = time.perf_counter()
            for i in range(n):
                step(FIRST_STEP + r * block + i)
            sync(device)
            times[label].append((time.perf_counter() - start) / n)
            if device.type == "cuda":
                peaks[label] = max(peaks.get(label, 0.0), torch.cuda.max_memory_allocated(device) / 2**30)
    base = statistics.median(times["teacher_forcing"])
    rows = []
    for label, measured in times.items():
        median = statistics.median(measured)
        rows.append({"tokens": length, "rollout": label, "step_ms": 1000 * median, "ratio": median / base,
                     "spread_ms": 1000 * (max(measured) - min(measured)),
                     "peak_mem_gb": peaks.get(label, "n/a")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "experiments" / "quickstart.toml"))
    parser.add_argument("--lengths", default="16,64,256", help="sequence lengths (square numbers of tokens)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="turns of every rollout (the median is reported)")
    parser.add_argument("--block", type=int, default=10, help="steps per turn")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    device = inference_device()
    name = f"train_step_{device_tag(device)}"
    settings = {"config": Path(args.config).name, "batch": args.batch_size, "rounds": args.rounds,
                "block": args.block, "overrides": args.overrides, "lengths": args.lengths,
                "threads": torch.get_num_threads()}
    rows = run_cases(name, [{"length": int(n)} for n in args.lengths.split(",")],
                     lambda length: measure(args.config, args.overrides, length, args.batch_size, args.rounds,
                                            args.block, device),
                     settings=settings, cost=lambda length: length**1.5)
    pra = [row["ratio"] for row in rows if row["rollout"] == "pra"]
    report(name, rows, settings=settings, goal=f"pra <= {GOAL}x teacher forcing",
           goal_met=all(ratio <= GOAL for ratio in pra))


if __name__ == "__main__":
    main()
