"""The paper's comparison in settings that have the problem PRA solves, with tuned baselines and
the statistics that say what the numbers support.

Every variant of experiments/digits/ (VARIANTS), in each setting of ``--settings``:
- ``digits32``: digits at 32x32 in 8x8 patches, 16 tokens of 192 dimensions into 16-dimensional
  states (12x compression, against 3x for the quickstart's 4x4 patches);
- ``photo64``: photo crops at 64x64 in 8x8 patches, 64 tokens of 192 dimensions (12x, and four
  times the sequence for errors to accumulate over).
Per setting:
1. Selection, on train.seed 100, which no test run uses: each tuned baseline (TUNED) is trained at
   every value of its knob and keeps the one with the lowest FID at the common guidance scale;
   lowdim-pixel-noise's pixel noise is matched to the RMS pra's state noise moves the pixels by,
   measured on pra's selection run (MATCHED); then each variant's guidance scale is searched
   (``--search``) on its selected run.
2. Test: every variant at its selected knob, seeds 0..N-1 (the arms that decide the claims,
   DECIDING, get the setting's seeds; the others fewer), evaluated at the common scale (the
   configs' sample.cfg_scale, fixed in advance) and at the scale its selection run chose.
3. The statistics of ``prakit compare --versus pra`` at both guidance choices (each seed's value,
   means with 95% t-intervals, differences to pra paired by seed with a paired t-test), and the
   rank correlation of each cheap diagnostic (the rollout gap, ...) with FID over every test run.
Results go to benchmarks/results/comparison_<setting>.{json,md} with FID charts. Each stage is a
``prakit sweep`` or a search that skips what is done: rerun the same command to resume, in
sittings if need be. Run it from the checkout (the stores, data/*.zarr, are relative to it).
Usage: python benchmarks/comparison.py [--settings digits32,photo64] [--out runs/comparison] [OVERRIDES]
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
from typing import Callable, NamedTuple

import tomli_w
from common import RESULTS, report

from prakit.eval.compare import compare
from prakit.eval.stats import describe, rank_correlation
from prakit.plots import bar_chart
from prakit.progress import format_duration
from prakit.run import EVAL_RECORD, Run, read_record
from prakit.sweep import Sweep

ROOT = Path(__file__).resolve().parents[1]
#: The variants: every config file of experiments/digits/.
VARIANTS = tuple(sorted(path.stem for path in (ROOT / "experiments" / "digits").glob("*.toml")))
#: The arms the claims rest on; they get every seed of a setting.
DECIDING = ("pra", "lowdim-only", "decoded-tf", "lowdim-pixel-noise", "noise-inj", "x-pred", "exact-rollout")
#: Each tuned baseline's knob and the values its selection run tries.
TUNED = {
    "noise-inj": ("model.rollout.sigma_max", (0.1, 0.2, 0.35, 0.5)),
    "x-pred": ("model.generator.last_step", ("euler", "clean")),
    "pra-selfsample": ("model.rollout.mix", (0.25, 0.5)),
    # steps of ground truth before rolling out (an untrained model's own tokens are noise); each
    # value leaves every setting rolling out for at least half its steps (photo64 trains 400)
    "exact-rollout": ("model.rollout.warmup", (0, 100, 200)),
}
#: Variants whose knob is set by measuring pra's selection run: lowdim-pixel-noise's pixel noise
#: gets the RMS of pra's state noise in pixels (benchmarks/pixel_perturbation.py).
MATCHED = {"lowdim-pixel-noise": "model.rollout.sigma_max"}
#: The train.seed of the selection runs: never a test seed.
SELECTION_SEED = 100
EVALUATORS = 'eval.evaluators=[{name="fid"},{name="precision_recall"},{name="class_consistency"},{name="rollout_gap"}]'
#: Numbers that cost a fraction of an FID evaluation, ranked against FID over every test run.
DIAGNOSTICS = ("rollout_gap", "rollout_gap_relative")


class Setting(NamedTuple):
    about: str
    overrides: tuple[str, ...]
    seeds: int  # of the deciding arms
    other_seeds: int
    num: int  # samples per evaluation
    #: A setting whose selection (tuned knobs, guidance scales) this one reuses rather than
    #: repeating it; its matched knobs are still measured on this setting's own pra run.
    selection_from: str | None = None


SETTINGS = {
    "digits32": Setting("digits at 32x32 in 8x8 patches: 16 tokens of 192 dimensions (12x compression)",
                        ("data.image_size=32", "model.patch_size=8", 'data.store="data/digits-32.zarr"',
                         "train.batch_size=16"), 5, 2, 500),
    "photo64": Setting("photo crops at 64x64 in 8x8 patches: 64 tokens of 192 dimensions (12x compression)",
                       ('data.source={name="photo_crops"}', "data.image_size=64", "data.num_classes=7",
                        "model.patch_size=8", 'data.store="data/photo-crops-64.zarr"', "train.batch_size=8",
                        "train.steps=400"), 3, 1, 250, selection_from="digits32"),
}


def prakit(*args: str, threads: int | None = None) -> None:
    """Run the prakit CLI, its output shown; stop on a failure."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    done = subprocess.run([sys.executable, "-m", "prakit", *args], env=env)
    if done.returncode:
        raise SystemExit(f"`prakit {' '.join(args)}` failed (exit status {done.returncode})")


def variant_config(folder: Path, variant: str, knob: tuple[str, object] | None = None, named: bool = True) -> Path:
    """A config file extending the variant's with ``knob`` (key, value) set, named after both
    (``noise-inj--sigma_max-0.2.toml``) or, not ``named``, after the variant alone."""
    data: dict = {"extends": str(ROOT / "experiments" / "digits" / f"{variant}.toml")}
    name = variant
    if knob is not None:
        key, value = knob
        *tables, field = key.split(".")
        table = data
        for part in tables:
            table = table.setdefault(part, {})
        table[field] = value
        name = tuned_name(variant, key, value) if named else variant
    path = folder / f"{name}.toml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data))
    return path


def tuned_name(variant: str, key: str, value: object) -> str:
    """The config name of a variant with its knob ``key`` set to ``value``: ``noise-inj--sigma_max-0.2``."""
    return f"{variant}--{key.split('.')[-1]}-{value}"


def sweep(out: Path, configs: list[Path], args: list[str], num: int) -> dict[str, list[Path]]:
    """Train, sample and evaluate ``configs`` as one local sweep (a run per core); its run
    directories by config name, in seed order."""
    prakit("sweep", *map(str, configs), *args, EVALUATORS, "launch.cpus_per_task=1", "--then", "sample,eval",
           "--num", str(num), "--cluster", "local", "--out", str(out), "--wait")
    made = Sweep.open(out)
    runs: dict[str, list[Path]] = {}
    for name, member in made.data["runs"].items():
        runs.setdefault(Path(member["config"]).stem, []).append(made.run_dir(name))
    return runs


def fid(record: Path) -> float:
    return json.loads(record.read_text())["numbers"]["fid"]


def select(out: Path, variants: list[str], overrides: list[str], num: int) -> tuple[dict[str, Path], dict[str, dict]]:
    """Every variant on the selection seed, each tuned one at every value of its knob, each matched
    one at the value measured on pra's run: each variant's selected run, and what set its knob."""
    configs = [variant_config(out / "configs", v, (TUNED[v][0], value)) for v in variants if v in TUNED
               for value in TUNED[v][1]]
    configs += [variant_config(out / "configs", v) for v in variants if v not in TUNED and v not in MATCHED]
    selection = on_selection_seed(overrides)
    runs = sweep(out / "runs", configs, selection, num)
    knobs = matched_knobs(variants, runs["pra"][0], out / "pixel_perturbation")
    if knobs:
        runs |= sweep(out / "matched", [variant_config(out / "configs", v, (MATCHED[v], knob["chosen"]))
                                        for v, knob in knobs.items()], selection, num)
    chosen = {}
    for variant in variants:
        scores = {name: fid(Run(run).eval_record) for name, [run] in runs.items() if name.split("--")[0] == variant}
        chosen[variant] = runs[min(scores, key=scores.get)][0]
        if variant in TUNED:
            key, values = TUNED[variant]
            by_value = {value: scores[tuned_name(variant, key, value)] for value in values}
            knobs[variant] = {"knob": key, "fid": by_value, "chosen": min(by_value, key=by_value.get)}
    return chosen, knobs


def on_selection_seed(overrides: list[str]) -> list[str]:
    """``overrides`` for a selection run: on :data:`SELECTION_SEED`, which no test run uses."""
    return [*overrides, f"train.seed={SELECTION_SEED}"]


def matched_knobs(variants: list[str], pra_run: Path, results: Path) -> dict[str, dict]:
    """Each matched variant's knob, set by measuring ``pra_run``."""
    matched = [v for v in variants if v in MATCHED]
    if not matched:
        return {}
    measured = match_pixel_noise(pra_run, results)
    return {v: {"knob": MATCHED[v], "chosen": measured["matched_noise_sigma_max"],
                "matched": f"pra's pixel perturbation RMS, {measured['target_pixel_rms']}"} for v in matched}


def reuse_selection(out: Path, source: str, variants: list[str], overrides: list[str],
                    num: int) -> tuple[dict[str, dict], dict[str, dict]]:
    """The tuned knobs and guidance searches of setting ``source``'s selection (its results JSON),
    and each matched knob measured on this setting's own pra run on the selection seed."""
    path = RESULTS / f"comparison_{source}.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: this setting reuses {source}'s selection; run --settings {source} first")
    chosen = json.loads(path.read_text())["selection"]
    unsearched = set(variants) - set(chosen["guidance_search"])
    untuned = {v for v in variants if v in TUNED} - set(chosen["knobs"])
    missing = sorted(unsearched | untuned)
    if missing:
        raise SystemExit(f"{path} has no selection for {', '.join(missing)}: rerun --settings {source} with them")
    runs = sweep(out / "runs", [variant_config(out / "configs", "pra")], on_selection_seed(overrides), num)
    knobs = {v: chosen["knobs"][v] for v in variants if v in TUNED}
    knobs |= matched_knobs(variants, runs["pra"][0], out / "pixel_perturbation")
    searches = {v: {**chosen["guidance_search"][v], "from": source} for v in variants}
    return knobs, searches


def match_pixel_noise(pra_run: Path, results: Path) -> dict:
    """benchmarks/pixel_perturbation.py on pra's run: the pixel noise that moves pixels as far as its state noise."""
    env = {**os.environ, "PRAKIT_BENCHMARK_RESULTS": str(results), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pixel_perturbation.py"), str(pra_run),
                           "--num", "500"], env=env)
    if done.returncode:
        raise SystemExit(f"pixel_perturbation.py {pra_run} failed (exit status {done.returncode})")
    return json.loads((results / "pixel_perturbation.json").read_text())


def search_guidance(selected: dict[str, Path], scales: str, num: int, workers: int) -> tuple[dict, list[str]]:
    """Each variant's search (its best scale by FID on its selection run, and the table), and the
    variants whose best is the largest or smallest scale searched."""
    in_parallel(lambda run: prakit("eval", str(run), EVALUATORS, "--search", f"sample.cfg_scale={scales}", "--num",
                                   str(num), "--no-progress", threads=1),
                list(selected.values()), workers, "guidance search")
    found = {v: json.loads(Run(run).search_record.read_text()) for v, run in selected.items()}
    return ({v: {"best": str(search["best"]["sample.cfg_scale"]), "rows": search["rows"]} for v, search in found.items()},
            [v for v, search in found.items() if search["edges"]])


def in_parallel(task: Callable, items: list, workers: int, what: str) -> None:
    """``task(item)`` for every item, ``workers`` at a time, printing how many are done and an ETA."""
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for done, future in enumerate(as_completed([pool.submit(task, item) for item in items]), 1):
            future.result()
            eta = (time.perf_counter() - started) / done * (len(items) - done)
            print(f"{what}: {done} of {len(items)} done, ETA {format_duration(eta)}", flush=True)


def test(out: Path, variants: list[str], knobs: dict[str, dict], setting: Setting, overrides: list[str],
         searches: dict[str, dict], workers: int) -> dict[str, list[Path]]:
    """Every variant at its selected knob over the test seeds, evaluated at the common scale and
    at its selected scale."""
    configs = {v: variant_config(out / "configs", v, (knobs[v]["knob"], knobs[v]["chosen"]) if v in knobs else None,
                                 named=False) for v in variants}
    num, runs = setting.num, {}
    for group, seeds in (("deciding", setting.seeds), ("others", setting.other_seeds)):
        members = [configs[v] for v in variants if (v in DECIDING) == (group == "deciding")]
        if members and seeds:
            made = sweep(out / group, members, [*overrides, "--seeds", str(seeds)], num)
            runs |= made
    in_parallel(lambda item: prakit("eval", str(item[1]), EVALUATORS, "--search",
                                    f"sample.cfg_scale={searches[item[0]]['best']}", "--num", str(num),
                                    "--no-progress", threads=1),
                [(v, run) for v, dirs in runs.items() for run in dirs], workers, "test seeds at their selected scale")
    return runs


def earlier_ranking(runs: dict[str, list[Path]], num: int, workers: int) -> dict:
    """Each variant's first test seed, its FID at the common scale from the checkpoint before its
    last, and Spearman's rho of those with the final FIDs: whether shorter runs rank alike."""
    def evaluate(run: Path) -> None:
        out = run / "earlier"
        checkpoints = Run(run).checkpoints()
        if len(checkpoints) < 2:
            raise SystemExit(f"{run} keeps one checkpoint: set train.ckpt_every below train.steps")
        if not (out / EVAL_RECORD).is_file():
            prakit("sample", str(checkpoints[-2]), "--num", str(num), "--out",
                   str(out / "samples.zarr"), threads=1)
            prakit("eval", str(out / "samples.zarr"), "--evaluators", "fid", "--out", str(out), "--no-progress",
                   threads=1)

    firsts = {v: dirs[0] for v, dirs in runs.items()}
    in_parallel(evaluate, list(firsts.values()), workers, "the first seeds at their checkpoint before the last")
    earlier = {v: read_record(run / "earlier") for v, run in firsts.items()}
    table = {v: {"checkpoint": earlier[v]["checkpoint"], "fid": earlier[v]["numbers"]["fid"],
                 "final_fid": fid(Run(run).eval_record)} for v, run in firsts.items()}
    return {"variants": table, "rank": rank_correlation([t["fid"] for t in table.values()],
                                                        [t["final_fid"] for t in table.values()])}


def correlations(comparison: dict) -> dict[str, dict]:
    """Spearman's rho of each diagnostic with FID: over every test run, and over the variants' means."""
    out = {}
    for diagnostic in DIAGNOSTICS:
        pairs = [(row["measures"][diagnostic]["values"][seed], value)
                 for row in comparison["rows"] if row["measures"].get(diagnostic) and row["measures"].get("fid")
                 for seed, value in row["measures"]["fid"]["values"].items()
                 if seed in row["measures"][diagnostic]["values"]]
        means = [(row["measures"][diagnostic]["mean"], row["measures"]["fid"]["mean"])
                 for row in comparison["rows"] if row["measures"].get(diagnostic) and row["measures"].get("fid")]
        if pairs:
            out[diagnostic] = {"runs": rank_correlation(*map(list, zip(*pairs))),
                               "variants": rank_correlation(*map(list, zip(*means)))}
    return out


def rows_of(comparison: dict, variant_of: dict[str, str], guidance: dict[str, str]) -> list[dict]:
    """One table row per variant (``variant_of`` each run directory): each measure's mean and
    interval, and its difference to pra."""
    versus = {row["name"]: row["measures"] for row in comparison["versus"]["rows"]}
    rows = []
    for row in comparison["rows"]:
        fid, variant = row["measures"]["fid"], variant_of[row["runs"][0]]
        line = {"variant": variant, "guidance": guidance[variant], "n": row["n"],
                "fid": fid["mean"], "fid_ci": interval(fid)}
        for number in ("precision", "recall", "class_consistency", "rollout_gap"):
            line[number] = row["measures"][number]["mean"] if row["measures"].get(number) else "n/a"
        diff = versus.get(row["name"], {}).get("fid")
        line["fid_minus_pra"] = diff["mean"] if diff else "-"
        line["diff_ci"] = interval(diff) if diff else "-"
        line["p"] = (diff["p_value"] if diff["p_value"] is not None else diff["note"]) if diff else "-"
        line["fid_by_seed"] = list(fid["values"].items())
        rows.append(line)
    return rows


def interval(summary: dict) -> str:
    low, high = summary["ci_low"], summary["ci_high"]
    return "n=1" if low is None else f"[{low:.3g}, {high:.3g}]"


def run_setting(name: str, setting: Setting, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    out = Path(args.out) / name
    overrides = [*setting.overrides, *args.overrides]
    print(f"{name}: {setting.about}", flush=True)
    variants = args.variants.split(",")
    if setting.selection_from:
        knobs, searches = reuse_selection(out / "select", setting.selection_from, variants, overrides, setting.num)
        edges = []
    else:
        selected, knobs = select(out / "select", variants, overrides, setting.num)
        searches, edges = search_guidance(selected, args.search, setting.num, args.workers)
    runs = test(out / "test", variants, knobs, setting, overrides, searches, args.workers)
    stability = earlier_ranking(runs, setting.num, args.workers)
    every = [run for v in variants for run in runs.get(v, [])]
    variant_of = {str(run): v for v, dirs in runs.items() for run in dirs}
    common = compare(every, versus=str(runs["pra"][0]))
    best = compare(every, versus=str(runs["pra"][0]), records={
        str(run): Run(run).search_dir / f"cfg_scale={searches[v]['best']}" / EVAL_RECORD for v in variants
        for run in runs.get(v, [])})
    rows = (rows_of(common, variant_of, {v: "common" for v in variants})
            + rows_of(best, variant_of, {v: f"best {searches[v]['best']}" for v in variants}))
    elapsed = time.perf_counter() - started
    if edges:
        print(f"best guidance at the edge of --search {args.search} for {', '.join(edges)}: widen it and rerun")
    report(f"comparison_{name}", rows, settings={"setting": setting.about, "overrides": overrides, "num": setting.num,
                                                 "search": args.search, "seeds": setting.seeds,
                                                 "other_seeds": setting.other_seeds, "out": str(out)},
           selection={"seed": SELECTION_SEED, "knobs": knobs, "guidance_search": searches,
                      "from": setting.selection_from},
           best_at_the_edge=edges, comparison={"common": common, "best": best},
           correlations={"common": correlations(common), "best": correlations(best)}, earlier_ranking=stability,
           seconds=round(elapsed), plots=charts(rows, name))


def charts(rows: list[dict], setting: str) -> list[str]:
    """For each guidance choice of ``rows``, a bar chart of each variant's FID, mean and 95% interval
    over its seeds; the files written."""
    written = []
    for guidance in dict.fromkeys(row["guidance"].split(" ")[0] for row in rows):
        bars = {row["variant"]: (row["fid"], half_width(describe(dict(row["fid_by_seed"]))))
                for row in rows if row["guidance"].split(" ")[0] == guidance}
        written += bar_chart(bars, RESULTS / f"comparison_{setting}_fid_{guidance}.png", value_label="FID",
                             title=f"{setting}: featnet FID ({guidance} guidance), mean and 95% interval over seeds")
    return [path.name for path in written]


def half_width(summary: dict) -> float:
    return 0.0 if summary["ci_low"] is None else (summary["ci_high"] - summary["ci_low"]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"of {', '.join(SETTINGS)}")
    parser.add_argument("--out", default="runs/comparison", help="where the sweeps' runs go")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="of experiments/digits/; pra is required")
    parser.add_argument("--num", type=int, help="samples per evaluation (default: the setting's)")
    parser.add_argument("--search", default="1.5,2,3,4,6,9,12,16,24",
                        help="guidance scales searched on each selection run")
    parser.add_argument("--seeds", type=int, help="test seeds of the deciding arms (default: the setting's)")
    parser.add_argument("--other-seeds", type=int, help="test seeds of the other arms (default: the setting's)")
    parser.add_argument("--workers", type=int, default=2, help="evaluations at a time")
    parser.add_argument("overrides", nargs="*", help="applied to every run, e.g. train.steps=400")
    args = parser.parse_args()
    unknown = set(args.settings.split(",")) - set(SETTINGS)
    if unknown:
        raise SystemExit(f"--settings: no setting {', '.join(sorted(unknown))}; the settings are {', '.join(SETTINGS)}")
    if "pra" not in args.variants.split(",") or set(args.variants.split(",")) - set(VARIANTS):
        raise SystemExit(f"--variants: name pra and any of {', '.join(VARIANTS)}")
    for name in args.settings.split(","):
        setting = SETTINGS[name]
        setting = setting._replace(seeds=args.seeds or setting.seeds, num=args.num or setting.num,
                                   other_seeds=setting.other_seeds if args.other_seeds is None else args.other_seeds)
        run_setting(name, setting, args)


if __name__ == "__main__":
    main()
