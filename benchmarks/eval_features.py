"""Evaluation speed and memory.

1. Feature extraction, images/s: featnet (fitted to the digits) on the CPU, from memory and
   streamed from the store; Inception-v3 with random weights (the speed does not depend on them)
   on the CPU and, when there is one, on the GPU.
2. Peak memory (RSS) of ``prakit eval`` on sample stores of N images at SIZE x SIZE (FID, KID,
   the Inception score and precision/recall in featnet's space, against a 10,000-image store),
   each in a fresh process, for several N: streaming keeps it nearly flat in N.

Stores are made in a temporary folder (removed after). Usage:
python benchmarks/eval_features.py [--sizes 10000,50000] [--size 256] [--skip-memory]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import report

from prakit import registry
from prakit.config import SampleConfig, load_config, unstructure
from prakit.data import SampleStore, open_store, prepare
from prakit.eval.features import extract
from prakit.eval.reference import StoreImages
from prakit.run import read_record

ROOT = Path(__file__).resolve().parents[1]


def throughput(network, images: torch.Tensor, batch: int, repeats: int = 3) -> float:
    """Images/s of the network's forward on ``images`` in batches (median of ``repeats``), after a warm-up."""
    device = next(network.parameters()).device

    def run():
        with torch.no_grad():
            for start in range(0, len(images), batch):
                network(images[start:start + batch].to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()

    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return len(images) / float(np.median(times))


def speed_rows(folder: Path) -> list[dict]:
    from prakit_eval.inception import InceptionV3

    digits = folder / "digits-16.zarr"
    prepare(registry.get("dataset").config("digits"), digits, size=16, shuffle_seed=0, progress=False)
    store = open_store(digits)
    start = time.perf_counter()
    featnet = registry.build(registry.get("features").config("featnet"), store=store, device=torch.device("cpu"))
    fit = time.perf_counter() - start
    images = torch.from_numpy(store.images[:])
    rows = [{"network": "featnet", "device": "cpu", "images": "digits 16x16", "batch": 500,
             "images_per_s": throughput(featnet, images, 500), "note": f"fitted in {fit:.1f} s, "
             f"held-out accuracy {featnet.accuracy:.3f}"}]
    start = time.perf_counter()
    for _ in extract(StoreImages(store), featnet, np.arange(len(store)), batch_size=500):
        pass
    rows.append({"network": "featnet", "device": "cpu", "images": "digits 16x16, streamed from the store",
                 "batch": 500, "images_per_s": len(store) / (time.perf_counter() - start), "note": ""})
    big = torch.randint(0, 256, (256, 256, 256, 3), dtype=torch.uint8)
    rows.append({"network": "featnet", "device": "cpu", "images": "random 256x256", "batch": 128,
                 "images_per_s": throughput(featnet, big, 128), "note": "area-downscaled to 32"})
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        inception = InceptionV3.with_random_weights(device=device)
        count, batch = (32, 8) if device == "cpu" else (2000, 200)
        rows.append({"network": "inception", "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                     "images": "random 256x256", "batch": batch,
                     "images_per_s": throughput(inception, big[:count] if count <= 256 else big.repeat(8, 1, 1, 1)[:count], batch),
                     "note": "random weights, fp32"})
    return rows


def write_store(path: Path, count: int, size: int, classes: int, attrs: dict, seed: int) -> Path:
    """``count`` images of random blocks (they compress like photographs, not like noise)."""
    store = SampleStore.open(path, num=count, image_shape=(size, size, 3), attrs=attrs)
    rng = np.random.default_rng(seed)
    block = max(1, size // 16)
    for start in range(0, count, 512):
        n = min(512, count - start)
        coarse = rng.integers(0, 256, (n, size // block, size // block, 3), dtype=np.uint8)
        store.write(range(start, start + n), coarse.repeat(block, 1).repeat(block, 2), np.arange(start, start + n) % classes)
    return path


def peak_memory(command: list[str]) -> tuple[float, float]:
    """Peak RSS (MiB) and seconds of ``command``, run as the only child of a fresh process."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True)
    seconds, kib = out.stdout.split()
    return int(kib) / 1024, float(seconds)


def memory_rows(folder: Path, sizes: list[int], size: int) -> list[dict]:
    cfg = load_config(ROOT / "experiments" / "quickstart.toml", [f"data.image_size={size}"])
    facts = {"config": unstructure(cfg), "checkpoint": "none", "sampling": unstructure(SampleConfig()),
             "class_names": [str(c) for c in range(10)]}
    reference = write_store(folder / "reference.zarr", 10_000, size, 10, {"class_names": facts["class_names"]}, seed=0)
    featnet = registry.get("features").config("featnet")
    registry.build(featnet, store=open_store(reference), device=torch.device("cpu"))  # fitted and cached once, unmeasured
    rows = []
    for count in sizes:
        samples = write_store(folder / f"samples-{count}.zarr", count, size, 10, facts, seed=count)
        command = [sys.executable, "-m", "prakit", "eval", str(samples), 'eval.features.name="featnet"', "--ref",
                   str(reference), "--evaluators", "fid,kid,inception_score,precision_recall", "--out",
                   str(folder / f"eval-{count}"), "--no-progress"]
        mib, seconds = peak_memory(command)
        numbers = read_record(folder / f"eval-{count}")["numbers"]
        raw = count * size * size * 3 / 2**20
        rows.append({"samples": count, "size": size, "raw_pixels_MiB": round(raw), "peak_rss_MiB": round(mib),
                     "seconds": round(seconds, 1), "images_per_s": round(count / seconds), "fid": numbers["fid"]})
        shutil.rmtree(samples)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000", help="sample counts for the memory runs")
    parser.add_argument("--size", type=int, default=256, help="image side of the memory runs")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report("eval_features_speed", speed_rows(Path(tmp)), command=" ".join(sys.argv),
               threads=torch.get_num_threads())
        if not args.skip_memory:
            sizes = [int(n) for n in args.sizes.split(",")]
            report("eval_memory", memory_rows(Path(tmp), sizes, args.size), command=" ".join(sys.argv),
                   note="prakit eval of a sample store against a 10,000-image store, each in a fresh process "
                        "(featnet fitted beforehand; its features of the reference are extracted in the first run)")


if __name__ == "__main__":
    main()
