"""The paper's comparison at small scale: PRA against every baseline, trained, sampled and evaluated alike.

1. Digits (16 tokens): the eight configs of experiments/digits/ (pixel-ar, x-pred, noise-inj,
   lowdim-only, pra, pra-calibrated, pra-selfsample, exact-rollout), 3 seeds each, as one
   ``prakit sweep --then sample,eval`` on this machine: the configs' 800 steps at batch 16, each
   run sampled and evaluated at the common guidance scale (the configs' ``sample.cfg_scale``).
2. A guidance search on seed 0 of each variant (``prakit eval --search sample.cfg_scale=...``);
   the other seeds are then evaluated at their variant's best scale. Diffusion heads guide eps,
   flow heads velocity: one scale does not fit both.
3. Photo crops at 32x32 with 4x4 patches (64 tokens, where the train-inference gap has room to
   grow): pixel-ar, lowdim-only, pra and exact-rollout, 1 seed, at the common scale.
Evaluation: featnet FID, precision/recall, class consistency and the rollout gap of ``--num``
samples; training wall-clock from each run's log. Tables (mean and std over seeds), a bar chart
of FID and the rollout-gap curves go to benchmarks/results/ablation_small*. The defaults took
74 minutes on a 2-core Intel Xeon (AVX-512) and about 3 hours on a slower 2-core AMD EPYC (two runs
at a time, one thread each). Rerun after an interruption: the sweeps submit only what is left and
the searches skip settings already evaluated.
Run it from the checkout (the configs' stores, data/*.zarr, are relative to it).
Usage: python benchmarks/ablation_small.py [--out runs/ablation-small] [--seeds 3] [--num 500] [OVERRIDES]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from common import RESULTS, report

from prakit.eval.compare import load_run, summarize_group
from prakit.plots import bar_chart, line_plot
from prakit.progress import format_duration
from prakit.sweep import Sweep

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ("pixel-ar", "x-pred", "noise-inj", "lowdim-only", "pra", "pra-calibrated", "pra-selfsample", "exact-rollout")
PHOTO = ("pixel-ar", "lowdim-only", "pra", "exact-rollout")
EVALUATORS = 'eval.evaluators=[{name="fid"},{name="precision_recall"},{name="class_consistency"},{name="rollout_gap"}]'
NUMBERS = ("fid", "precision", "recall", "class_consistency", "rollout_gap")
#: Photo crops at 32x32 with 4x4 patches: 64 tokens, 7 classes (the photos).
PHOTO_DATA = ['data.source={name="photo_crops"}', "data.image_size=32", "data.num_classes=7"]


def prakit(*args: str, threads: int | None = None) -> None:
    """Run the prakit CLI, its output shown; stop on a failure."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    done = subprocess.run([sys.executable, "-m", "prakit", *args], env=env)
    if done.returncode:
        raise SystemExit(f"`prakit {' '.join(args)}` failed (exit status {done.returncode})")


def sweep(out: Path, variants: tuple[str, ...], seeds: int, num: int, overrides: list[str]) -> Sweep:
    """Train, sample and evaluate ``variants`` x ``seeds`` as one local sweep (two runs at a time)."""
    configs = [str(ROOT / "experiments" / "digits" / f"{v}.toml") for v in variants]
    prakit("sweep", *configs, *overrides, EVALUATORS, "launch.cpus_per_task=1", "--seeds", str(seeds),
           "--then", "sample,eval", "--num", str(num), "--cluster", "local", "--out", str(out), "--wait")
    return Sweep.open(out)


def by_variant(sweep: Sweep) -> dict[str, list[Path]]:
    """The sweep's run directories by variant (config name), in seed order."""
    runs: dict[str, list[Path]] = {}
    for name, member in sweep.data["runs"].items():
        runs.setdefault(Path(member["config"]).stem, []).append(sweep.run_dir(name))
    return runs


def search_dir(run: Path, scale: str) -> Path:
    return run / "search" / f"cfg_scale={scale}"


def guidance_search(runs: dict[str, list[Path]], scales: list[str], num: int,
                    workers: int) -> tuple[dict[str, str], list[str]]:
    """Each variant's best scale by the FID of seed 0 over ``scales``, its other seeds evaluated at it;
    and the variants whose best is the largest or smallest scale searched."""
    def evaluate(run: Path, values: list[str]) -> None:
        prakit("eval", str(run), EVALUATORS, "--search", f"sample.cfg_scale={','.join(values)}", "--num", str(num),
               "--no-progress", threads=1)

    in_parallel(lambda seeds: evaluate(seeds[0], scales), list(runs.values()), workers, "guidance search")
    best, edges = {}, []
    for variant, seeds in runs.items():
        found = json.loads((seeds[0] / "search" / "search.json").read_text())
        best[variant] = str(found["best"]["sample.cfg_scale"])
        edges += [variant] if found["edges"] else []
    in_parallel(lambda item: evaluate(item[0], [best[item[1]]]),
                [(run, v) for v, seeds in runs.items() for run in seeds[1:]], workers, "other seeds at their best")
    return best, edges


def in_parallel(task: Callable, items: list, workers: int, what: str) -> None:
    """``task(item)`` for every item, ``workers`` at a time, printing how many are done and an ETA."""
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for done, future in enumerate(as_completed([pool.submit(task, item) for item in items]), 1):
            future.result()
            eta = (time.perf_counter() - started) / done * (len(items) - done)
            print(f"{what}: {done} of {len(items)} done, ETA {format_duration(eta)}", flush=True)


def summary(runs: list[Path], records: list[Path]) -> dict:
    """``summarize_group`` (as ``prakit compare``) of ``runs``, each with the evaluation in ``records``."""
    members = [{**load_run(run), "record": json.loads(record.read_text())} for run, record in zip(runs, records)]
    return summarize_group(members, [], list(NUMBERS))


def row(dataset: str, variant: str, guidance: str, group: dict) -> dict:
    out = {"data": dataset, "variant": variant, "guidance": guidance, "seeds": len(group["runs"])}
    for number in (*NUMBERS, "train_seconds"):
        stats = group["measures"].get(number)
        out[number] = stats["mean"] if stats else "n/a"
        if number in ("fid", "rollout_gap"):
            out[f"{number}_std"] = stats["std"] if stats else "n/a"
    out["rollout_gap_curve"] = group["rollout_gap_curve"] or []
    return out


def plots(rows: list[dict]) -> list[str]:
    """FID bars (with the spread over seeds) at both guidance choices, and the rollout-gap curves."""
    names = []
    for dataset in dict.fromkeys(r["data"] for r in rows):
        mine = [r for r in rows if r["data"] == dataset]
        for guidance in dict.fromkeys(r["guidance"].split(" ")[0] for r in mine):
            shown = [r for r in mine if r["guidance"].startswith(guidance)]
            path = RESULTS / f"ablation_small_{dataset}_fid_{guidance}.png"
            bar_chart({r["variant"]: (r["fid"], r["fid_std"]) for r in shown}, path, ylabel="FID",
                      title=f"{dataset}: featnet FID ({guidance} guidance), mean and std over seeds")
            names.append(path.name)
        common = [r for r in mine if r["guidance"].startswith("common") and r["rollout_gap_curve"]]
        path = RESULTS / f"ablation_small_{dataset}_rollout_gap.png"
        line_plot({r["variant"]: (range(len(r["rollout_gap_curve"])), r["rollout_gap_curve"]) for r in common},
                  path, xlabel="position", ylabel="gap", title=f"{dataset}: own-input minus true-input error")
        names.append(path.name)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ablation-small", help="where the sweeps' runs go")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--num", type=int, default=500, help="samples per evaluation")
    parser.add_argument("--batch-size", type=int, default=16, help="digits training batch (the configs' 800 steps)")
    parser.add_argument("--search", default="2,3,4,6,8,12", help="guidance scales searched on seed 0 of each variant")
    parser.add_argument("--photo-steps", type=int, default=800)
    parser.add_argument("--photo-batch-size", type=int, default=8)
    parser.add_argument("--photo-store", default="data/photo-crops-32.zarr", help="prepared on first use")
    parser.add_argument("--variants", default=",".join(DIGITS), help="digits variants (experiments/digits/*.toml)")
    parser.add_argument("--photo-variants", default=",".join(PHOTO), help="photo-crops variants ('' for none)")
    parser.add_argument("--workers", type=int, default=2, help="searches at a time")
    parser.add_argument("overrides", nargs="*", help="applied to every run, e.g. model.preset=micro")
    args = parser.parse_args()

    started = time.perf_counter()
    out = Path(args.out)
    variants = tuple(v for v in args.variants.split(",") if v)
    photo_variants = tuple(v for v in args.photo_variants.split(",") if v)
    digits = sweep(out / "digits", variants, args.seeds, args.num, [f"train.batch_size={args.batch_size}", *args.overrides])
    digit_runs = by_variant(digits)
    best, edges = guidance_search(digit_runs, args.search.split(","), args.num, args.workers)
    rows = []
    for variant, runs in digit_runs.items():
        rows.append(row("digits", variant, "common", summary(runs, [r / "eval.json" for r in runs])))
        rows.append(row("digits", variant, f"best {best[variant]}",
                        summary(runs, [search_dir(r, best[variant]) / "eval.json" for r in runs])))
    if photo_variants:
        photo = sweep(out / "photo", photo_variants, 1, args.num,
                      [*PHOTO_DATA, f"data.store={json.dumps(args.photo_store)}", f"train.steps={args.photo_steps}",
                       f"train.batch_size={args.photo_batch_size}", *args.overrides])
        for variant, runs in by_variant(photo).items():
            rows.append(row("photo", variant, "common", summary(runs, [r / "eval.json" for r in runs])))
    elapsed = time.perf_counter() - started
    print(f"ablation_small: {format_duration(elapsed)}")
    if edges:
        print(f"best guidance at the edge of --search {args.search} for {', '.join(edges)}: widen it and rerun")
    report("ablation_small", rows, settings={
        "seeds": args.seeds, "num": args.num, "digits_batch_size": args.batch_size, "search": args.search,
        "photo_steps": args.photo_steps, "photo_batch_size": args.photo_batch_size, "overrides": args.overrides,
        "out": str(out)}, best_guidance=best, best_at_the_edge=edges, seconds=round(elapsed), plots=plots(rows))


if __name__ == "__main__":
    main()
