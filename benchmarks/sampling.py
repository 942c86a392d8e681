"""Sampling speed: KV-cached versus recomputing, against sequence length, batch, guidance and head steps.

The config's model (seeded random weights: speed does not depend on them) draws pixel tokens with
the real sampler (``ARModel.sample_tokens``), once with the KV cache and once reading the whole
sequence again for every token (``cached=False``), at 16, 64 and 256 tokens (the config's patches
on 16x16, 32x32, 64x64 images), batch sizes 1, 16 and 256 (1 and 16 on the CPU), guidance off and
on, with the config's head steps; then the head steps varied at 64 tokens, batch 16, guided.
With ``--compile default,reduce-overhead`` the cached sampler is also timed compiled in each
torch.compile mode (``sample.compile``: the decoding step and the head's network), as mode
``compiled <mode>``; compiling happens in the warm-up draw and is not timed. ``cudagraph_skips``
counts the graphs torch declined to run as CUDA graphs in that case (``TORCH_LOGS=perf_hints``
prints why; with ``reduce-overhead`` on a GPU it should be 0).
A case is drawn until 3 s have passed (at most 3 times); its median is reported.
The backbone's cost per token is measured apart, with a 1-step head: cached it stays flat as the
sequence grows, recomputing it grows with the position (``sampling_<device>_backbone.{png,svg}``).
With ``--contention`` it instead draws 100 quickstart images beside a 2-thread job using every
core, with all threads, one thread, and the threads ``prakit sample`` chooses (prakit/threads.py).
An interrupted run, rerun with the same arguments, measures only what is missing.
Usage: python benchmarks/sampling.py [--lengths 16,64,256] [--batch-sizes 1,16] [--head-steps 10,25,50,100]
                                    [--compile default]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import attrs
import torch
from common import (
    RESULTS,
    THREAD_SETTINGS,
    beside_busy_job,
    device_tag,
    image_size,
    report,
    run_cases,
    sync,
    with_threads,
)
from torch._dynamo.utils import counters

from prakit.choices import SAMPLER_COMPILE
from prakit.config import load_config
from prakit.model import ARModel
from prakit.plots import line_plot
from prakit.random import sample_generators
from prakit.run import inference_device

ROOT = Path(__file__).resolve().parents[1]
MIN_SECONDS, MAX_REPEATS = 3.0, 3
STEPS_SERIES_TOKENS, STEPS_SERIES_BATCH = 64, 16


class Sampler:
    """Models by sequence length, and timed draws from them."""

    def __init__(self, config: str, overrides: list[str], device: torch.device):
        self.config, self.overrides, self.device = config, overrides, device
        self.cfg = load_config(config, overrides)
        self.models: dict[tuple[int, str], ARModel] = {}

    def model(self, tokens: int, compile: str = "off") -> ARModel:
        """The model for ``tokens``-token samples (the same weights whatever ``compile``), compiled in that mode."""
        if (tokens, compile) not in self.models:
            size = image_size(tokens, self.cfg.model.patch_size)
            torch.manual_seed(0)
            cfg = load_config(self.config, [*self.overrides, f"data.image_size={size}"])
            model = ARModel.from_config(cfg).to(self.device).eval()
            model.compile_sampling(compile)
            self.models[tokens, compile] = model
        return self.models[tokens, compile]

    def draw(self, tokens: int, batch: int, guided: bool, head_steps: int, cached: bool, compile: str = "off") -> float:
        """Seconds for one batch of ``tokens``-token samples."""
        model = self.model(tokens, compile)
        scale = self.cfg.sample.cfg_scale if guided else 1.0
        options = attrs.evolve(self.cfg.sample, cfg_scale=scale, steps=head_steps)
        labels = torch.arange(batch, device=self.device) % self.cfg.data.num_classes
        sync(self.device)
        start = time.perf_counter()
        model.sample_tokens(labels, options, rng=sample_generators(0, range(batch)), cached=cached)
        sync(self.device)
        return time.perf_counter() - start

    def timed(self, **case) -> float:
        """Median seconds of repeated draws (after a warm-up draw with a 1-step head)."""
        self.draw(**{**case, "head_steps": 1})
        times: list[float] = []
        while not times or (sum(times) < MIN_SECONDS and len(times) < MAX_REPEATS):
            times.append(self.draw(**case))
        return statistics.median(times)

    def backbone_ms_by_position(self, tokens: int, batch: int, guided: bool, cached: bool,
                                compile: str = "off") -> list[float]:
        """Milliseconds of each backbone call of a draw (a 1-step head), in order: cached, the
        calls read positions 1 .. tokens-1; recomputing, they read 0 .. tokens-1 tokens."""
        backbone = self.model(tokens, compile).backbone
        calls: list[float] = []

        def timed(function):
            def call(*args):
                sync(self.device)
                start = time.perf_counter()
                out = function(*args)
                sync(self.device)
                calls.append(1000 * (time.perf_counter() - start))
                return out
            return call

        backbone.step, backbone.forward = timed(backbone.step), timed(backbone.forward)
        try:
            self.draw(tokens, batch, guided, head_steps=1, cached=cached, compile=compile)
        finally:
            del backbone.step, backbone.forward
        return calls


def measure(sampler: Sampler, tokens: int, batch: int, guided: bool, head_steps: int, mode: str) -> list[dict]:
    """``mode``: cached, recompute, or ``compiled <torch.compile mode>`` (cached)."""
    how = {"cached": mode != "recompute", "compile": mode.split()[1] if mode.startswith("compiled ") else "off"}
    skipped = counters["inductor"]["cudagraph_skips"]
    seconds = sampler.timed(tokens=tokens, batch=batch, guided=guided, head_steps=head_steps, **how)
    positions = sampler.backbone_ms_by_position(tokens, batch, guided, **how)
    return [{"tokens": tokens, "batch": batch, "guidance": guided, "head_steps": head_steps, "mode": mode,
             "s_per_image": seconds / batch, "images_per_s": batch / seconds,
             "ms_per_token": 1000 * seconds / tokens, "backbone_ms_per_token": statistics.fmean(positions),
             "cudagraph_skips": counters["inductor"]["cudagraph_skips"] - skipped,
             "backbone_ms_by_position": positions}]


def cases(lengths: list[int], batches: list[int], head_steps: list[int], default_steps: int,
          compiles: list[str]) -> list[dict]:
    modes = ("cached", "recompute", *(f"compiled {c}" for c in compiles if c != "off"))
    grid = [{"tokens": t, "batch": b, "guided": g, "head_steps": default_steps, "mode": m}
            for t in lengths for b in batches for g in (False, True) for m in modes]
    series = [{"tokens": STEPS_SERIES_TOKENS, "batch": STEPS_SERIES_BATCH, "guided": True, "head_steps": s,
               "mode": "cached"} for s in head_steps]
    return grid + [case for case in series if case not in grid]


def cost(tokens: int, batch: int, guided: bool, head_steps: int, mode: str) -> float:
    """Rough relative cost of a case, for the ETA: every call has a fixed overhead (which is all a
    small batch costs) plus work per row; the backbone is timed twice (once alone)."""
    rows = batch * (1 + guided)
    head = tokens * head_steps * (6 + rows)
    backbone = tokens * 24 + rows * tokens**2 / 16 if mode == "recompute" else tokens * (24 + rows)
    return head + 2 * backbone


def charts(rows: list[dict], name: str) -> list[str]:
    """Backbone ms per call by position (cached vs recompute), and s/image against sequence length;
    the files written."""
    grid = [r for r in rows if r["head_steps"] == rows[0]["head_steps"] and r["guidance"]]
    batch = max(r["batch"] for r in grid if r["batch"] <= STEPS_SERIES_BATCH)
    picked = [r for r in grid if r["batch"] == batch]
    backbone = {f"{r['mode']}, {r['tokens']} tokens": (range(r["mode"] != "recompute", r["tokens"]),
                                                        r["backbone_ms_by_position"]) for r in picked}
    first = line_plot(backbone, RESULTS / f"{name}_backbone.png", xlabel="sequence position read",
                      ylabel="ms", title=f"backbone ms per call, batch {batch}, guided")
    modes = dict.fromkeys(r["mode"] for r in picked)  # in the order measured
    per_image = {mode: ([r["tokens"] for r in picked if r["mode"] == mode],
                        [r["s_per_image"] for r in picked if r["mode"] == mode]) for mode in modes}
    second = line_plot(per_image, RESULTS / f"{name}_per_image.png", xlabel="tokens", ylabel="s/image",
                       title=f"seconds per image, batch {batch}, guided", log_x=True)
    return [path.name for path in first + second]


def contention(config: str, overrides: list[str]) -> None:
    """Images/s of 100 quickstart images alone and beside a 2-thread job, by thread setting."""
    sampler = Sampler(config, overrides, torch.device("cpu"))
    tokens = (sampler.cfg.data.image_size // sampler.cfg.model.patch_size) ** 2
    num, steps = 100, sampler.cfg.sample.steps
    every = torch.get_num_threads()
    rows = []
    for busy in (False, True):
        with beside_busy_job(busy):
            for setting in THREAD_SETTINGS:
                threads, seconds = with_threads(setting, lambda: sampler.draw(tokens, num, True, steps, cached=True))
                rows.append({"beside_2_thread_job": busy, "threads": setting, "threads_used": threads,
                             "seconds": seconds, "images_per_s": num / seconds})
    report("sampling_contention_cpu", rows, settings={"config": Path(config).name, "images": num,
                                                       "cores": every, "overrides": overrides})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "experiments" / "quickstart.toml"))
    parser.add_argument("--lengths", default="16,64,256", help="sequence lengths (square numbers of tokens)")
    parser.add_argument("--batch-sizes", help="default: 1,16,256 on CUDA, 1,16 on the CPU")
    parser.add_argument("--head-steps", default="10,25,50,100", help=f"head steps at {STEPS_SERIES_TOKENS} "
                                                                     f"tokens, batch {STEPS_SERIES_BATCH}, guided")
    parser.add_argument("--compile", default="off", help="torch.compile modes the cached sampler is also timed in "
                                                         "(sample.compile), e.g. default,reduce-overhead")
    parser.add_argument("--contention", action="store_true", help="threads beside a busy 2-thread job instead")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    compiles = args.compile.split(",")
    if bad := [mode for mode in compiles if mode not in SAMPLER_COMPILE]:
        raise SystemExit(f"--compile: {bad[0]!r} is not one of {', '.join(SAMPLER_COMPILE)}")
    if args.contention:
        return contention(args.config, args.overrides)

    device = inference_device()
    sampler = Sampler(args.config, args.overrides, device)
    batches = args.batch_sizes or ("1,16,256" if device.type == "cuda" else "1,16")
    settings = {"config": Path(args.config).name, "overrides": args.overrides, "lengths": args.lengths,
                "batch_sizes": batches, "head_steps": args.head_steps, "compile": args.compile,
                "cfg_scale": sampler.cfg.sample.cfg_scale,
                "precision": "fp32 (as prakit sample)",
                "threads": torch.get_num_threads()}
    name = f"sampling_{device_tag(device)}"
    todo = cases([int(n) for n in args.lengths.split(",")], [int(n) for n in batches.split(",")],
                 [int(n) for n in args.head_steps.split(",")], sampler.cfg.sample.steps, compiles)
    rows = run_cases(name, todo, lambda **case: measure(sampler, **case), settings=settings, cost=cost)
    report(name, rows, settings=settings, plots=charts(rows, name))


if __name__ == "__main__":
    main()
