"""Training step time, images/s and model FLOPs utilisation, by attention kernel and torch.compile; sampling images/s.

Runs the real training step (loss, backward, AdamW, EMA update) on random images of the config's
shape, after warm-up steps, once per attention kernel (``--attention``: $PRAKIT_ATTENTION's
choices, on CUDA) and compile setting (``--compile off,on``: ``train.compile``), fresh weights
each time; then draws a batch of images with the KV-cached sampler. With ``--end-to-end N`` it
also runs the training job itself (``prakit train``: the config's store and loader, logging, a
checkpoint) for N steps and reports its images/s after the first window.
Usage: python benchmarks/train_speed.py [--config experiments/quickstart.toml] [--steps 10] [--attention sdpa,xformers] [--compile off,on] [--end-to-end 100]
On CUDA the step runs in bf16 autocast and MFU is reported against the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import device_tag, report, sync, training_step
from prakit_models.transformer import ATTENTION_KERNEL, xformers_causal_attention

from prakit import snapshot
from prakit.config import load_config
from prakit.errors import PrakitError
from prakit.model import ARModel
from prakit.random import sample_generators
from prakit.run import Run
from prakit.summary import meta_model, training_flops
from prakit.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, SXM


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "experiments" / "quickstart.toml"))
    parser.add_argument("--batch-size", type=int, help="images per step (default: the config's)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3,
                        help="steps before timing (torch.compile compiles in the first)")
    parser.add_argument("--attention", default=os.environ.get(ATTENTION_KERNEL, "auto"),
                        help="attention kernels to time: auto, sdpa, xformers (default: $PRAKIT_ATTENTION or auto)")
    parser.add_argument("--compile", default="off", help="torch.compile settings to time: off, on or off,on")
    parser.add_argument("--sample-images", type=int, default=16, help="images drawn to time sampling (0: none)")
    parser.add_argument("--end-to-end", type=int, default=0, metavar="N",
                        help="also time `prakit train` for N steps on the config's dataset")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    settings = args.compile.split(",")
    if bad := [value for value in settings if value not in ("off", "on")]:
        raise SystemExit(f"--compile: {bad[0]!r} is neither off nor on")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for kernel in args.attention.split(","):
        for compiled in settings:
            cfg = load_config(args.config, [*args.overrides, f"train.compile={str(compiled == 'on').lower()}"])
            with snapshot.environment(**{ATTENTION_KERNEL: kernel}):
                try:
                    rows.append(time_training(cfg, args, device, kernel, compiled))
                except PrakitError as error:
                    raise SystemExit(f"--attention {kernel}: {error}") from None
    cfg = load_config(args.config, args.overrides)
    meta = {"sample_img_s": sampling_images_per_s(cfg, args.sample_images, device)} if args.sample_images else {}
    if args.end_to_end:
        meta["job_img_s"] = training_job_images_per_s(args.config, args.overrides, args.end_to_end)
    for name, value in meta.items():
        print(f"{name}: {value:.3g}")
    report(f"train_speed_{Path(args.config).stem}_{device_tag(device)}", rows,
           steps=args.steps, overrides=args.overrides, cfg_scale=cfg.sample.cfg_scale, **meta)


def time_training(cfg, args, device: torch.device, kernel: str, compiled: str) -> dict:
    """One row: the mean time of ``args.steps`` training steps after ``args.warmup``."""
    batch = args.batch_size or cfg.train.batch_size
    model, step = training_step(cfg, batch, device)
    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    for i in range(args.steps):
        step(i)
    sync(device)
    step_s = (time.perf_counter() - start) / args.steps
    flops = training_flops(meta_model(cfg)) * batch
    peak = peak_tflops(device)
    xformers = device.type == "cuda" and xformers_causal_attention() is not None
    row = {
        "config": Path(args.config).name,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "attention": f"{kernel}: {'xformers' if xformers else 'sdpa'}",
        "compile": compiled,
        "batch": batch,
        "step_s": step_s,
        "train_img_s": batch / step_s,
        "tflops_s": flops / step_s / 1e12,
        "mfu": (flops / step_s / 1e12 / peak) if peak else "n/a",
        "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else "n/a",
        "threads": torch.get_num_threads(),
    }
    del model, step
    torch.compiler.reset()  # the next case compiles afresh
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def sampling_images_per_s(cfg, n: int, device: torch.device) -> float:
    """Images/s of one batch of ``n`` drawn with the KV-cached sampler, in fp32 as ``prakit sample`` draws."""
    torch.manual_seed(0)
    model = ARModel.from_config(cfg).to(device).eval()
    labels = torch.arange(n, device=device) % cfg.data.num_classes
    sync(device)
    start = time.perf_counter()
    model.sample(labels, cfg.sample, rng=sample_generators(0, range(n)))
    sync(device)
    return n / (time.perf_counter() - start)


def training_job_images_per_s(config: str, overrides: list[str], steps: int) -> float:
    """Median images/s that ``prakit train`` logs over ``steps`` steps, its first window left out."""
    window = max(1, steps // 10)
    cfg = load_config(config, [*overrides, f"train.steps={steps}", f"train.log_every={window}",
                               f"train.ckpt_every={steps}", "train.sample_every=0"])
    with tempfile.TemporaryDirectory() as run_dir:
        train(cfg, run_dir, resume=False, progress=False)
        rows = Run(run_dir).metrics()
    return statistics.median(row["images_per_s"] for row in rows[1:] or rows)


if __name__ == "__main__":
    main()
