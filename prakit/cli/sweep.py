"""``prakit sweep``: an ablation (configs x grid x seeds) as cluster jobs, with ``status``,
``collect`` and ``cancel`` on the sweep's folder."""

from __future__ import annotations

import argparse
import os
import time

from prakit.choices import CLUSTERS
from prakit.cli.compare import VERSUS_HELP
from prakit.cli.config import OVERRIDES_HELP
from prakit.cli.submit import add_launch_flags, launch_overrides

ACTIONS = ("status", "collect", "cancel")
PROGRESS_EVERY_S = 10  # how often `--wait` looks at the runs' progress
SWEEP_EPILOG = """\
examples:
  prakit sweep experiments/quickstart.toml --grid model.rollout.name=teacher_forcing,pra --seeds 3 --then sample,eval
  prakit sweep experiments/digits/*.toml --seeds 3 --cluster slurm --out runs/digits-sweep
  prakit sweep status runs/digits-sweep
  prakit sweep collect runs/digits-sweep
  prakit sweep collect runs/digits-sweep --versus rollout=teacher_forcing
  prakit sweep cancel runs/digits-sweep"""


def add_parser(groups: argparse._SubParsersAction) -> None:
    sweep = groups.add_parser(
        "sweep", help="an ablation as one command: configs x --grid x --seeds as jobs; status, collect, cancel",
        description="Submit every run of configs x grid x seeds, each stage of a run as a job (on SLURM the "
        "stages depend on each other). Rerun to submit only what is missing or failed. "
        "`prakit sweep status|collect|cancel SWEEP_DIR` reads the sweep's jobs, tabulates its runs, "
        "or cancels what is queued or running.",
        epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("items", nargs="+", metavar="CONFIG|KEY=VALUE",
                       help=f"experiment configs (or status|collect|cancel SWEEP_DIR); {OVERRIDES_HELP}")
    sweep.add_argument("--grid", action="append", default=[], dest="axes", metavar="KEY=V1,V2,...",
                       help="one axis of the grid; repeat for their product")
    sweep.add_argument("--seeds", type=int, help="train each variant with seeds 0..N-1 (train.seed)")
    sweep.add_argument("--then", default="", metavar="sample,eval",
                       help="stages after training: sample (into the store eval reads) and eval")
    sweep.add_argument("--num", type=int, help="samples to draw and evaluate (default: eval.num, else sample.num)")
    sweep.add_argument("--shards", type=int, default=1, help="split each run's sampling into this many jobs")
    sweep.add_argument("--out", help="the sweep's folder (default: runs/sweep-<first config name>)")
    sweep.add_argument("--cluster", choices=CLUSTERS, help="where to run (default: the configs' launch.cluster)")
    sweep.add_argument("--wait", action="store_true", help="wait for the jobs, then show the sweep's status")
    sweep.add_argument("--versus", metavar="NAME", help=f"collect only: {VERSUS_HELP}")
    add_launch_flags(sweep)
    sweep.set_defaults(run=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    from prakit.errors import PrakitError

    if args.versus is not None and args.items[0] != "collect":
        raise PrakitError("--versus belongs to `prakit sweep collect SWEEP_DIR --versus NAME`")
    if args.items[0] in ACTIONS:
        if len(args.items) != 2:
            raise PrakitError(f"usage: prakit sweep {args.items[0]} SWEEP_DIR")
        if args.items[0] == "collect":
            return collect(args.items[1], args.versus)
        return {"status": show_status, "cancel": cancel}[args.items[0]](args.items[1])
    return start(args)


def start(args: argparse.Namespace) -> int:
    from pathlib import Path

    from prakit.errors import PrakitError
    from prakit.sweep import Definition, Sweep, parse_grid, submit_sweep

    files = [item for item in args.items if "=" not in item]
    overrides = [item for item in args.items if "=" in item] + launch_overrides(args)
    if not files:
        raise PrakitError("name at least one experiment config to sweep")
    if args.seeds is not None and args.seeds < 1:
        raise PrakitError(f"--seeds must be at least 1, got {args.seeds}")
    if args.shards < 1:
        raise PrakitError(f"--shards must be at least 1, got {args.shards}")
    then = [stage.strip() for stage in args.then.split(",") if stage.strip()]
    definition = Definition(tuple(os.path.realpath(f) for f in files), tuple(overrides),
                            tuple(parse_grid(g) for g in args.axes), args.seeds)
    out = Path(args.out or f"runs/sweep-{Path(files[0]).stem}")
    settings = {"stages": ["train", *then], "num": args.num, "shards": args.shards}
    sweep = Sweep.create(out, definition, settings)
    jobs = submit_sweep(sweep, stages=settings["stages"], cluster=args.cluster, num=args.num, shards=args.shards)
    print(f"sweep {out}: {len(sweep.names)} runs, {len(jobs)} jobs submitted"
          + ("" if jobs else " (every stage is done, queued or running)"))
    for record in jobs:
        shard = f" shard {record['shard']}" if "shard" in record else ""
        print(f"job {record['job_id']}: {record['stage']}{shard} of {record['run']}")
    if not args.wait:
        return 0
    from prakit.sweep import wait

    shown, looked = [""], [-PROGRESS_EVERY_S]

    def show_progress() -> None:  # reading every run's files takes CPU from the jobs: not too often
        if time.monotonic() - looked[0] < PROGRESS_EVERY_S:
            return
        looked[0] = time.monotonic()
        line = progress_line(status_rows(sweep))
        if line != shown[0]:
            print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
            shown[0] = line

    wait(jobs, tick=show_progress)
    return show_status(out)


def status_rows(sweep) -> list[dict]:
    """The sweep's stage states, a running stage with how far it has got."""
    from prakit.progress import stage_progress
    from prakit.sweep import stage_states

    settings = sweep.data["settings"]
    rows = stage_states(sweep, settings["stages"], settings["num"])
    for row in rows:
        if row["state"] == "RUNNING":
            row["progress"] = stage_progress(row["stage"], sweep.run_dir(row["run"]), settings["num"])
    return rows


def progress_line(rows: list[dict]) -> str:
    """``5 of 12 stages completed; running: pra-seed0 train step 340 of 800, ETA 2m10s``."""
    completed = sum(row["state"] == "COMPLETED" for row in rows)
    running = [f"{row['run']} {row['stage']}" + (f" {row['progress']}" if row.get("progress") else "")
               for row in rows if row["state"] == "RUNNING"]
    return f"{completed} of {len(rows)} stages completed" + (f"; running: {', '.join(running)}" if running else "")


def show_status(folder: str) -> int:
    """One line per run and stage, then how many are completed; exit status 1 if any failed."""
    from prakit.sweep import Sweep

    sweep = Sweep.open(folder)
    rows = status_rows(sweep)
    width = max(len(row["run"]) for row in rows)
    for row in rows:
        jobs = f"  job {','.join(row['jobs'])}" if row["jobs"] else ""
        progress = f"  {row['progress']}" if row.get("progress") else ""
        print(f"{row['run']:<{width}}  {row['stage']:<6}  {row['state']}{jobs}{progress}")
        if "error" in row:
            print(f"{'':<{width}}  {row['error']}\n{'':<{width}}  log: {row['log']}")
        elif "note" in row:
            print(f"{'':<{width}}  {row['note']}")
    print(progress_line(rows))
    return 1 if any("error" in row for row in rows) else 0


def collect(folder: str, versus: str | None = None) -> int:
    """The comparison table over the sweep's evaluated runs (with ``versus``, the differences to
    that row), written beside its manifest."""
    from prakit.errors import PrakitError
    from prakit.eval.compare import compare, format_comparison, write_comparison
    from prakit.run import Run
    from prakit.sweep import Sweep

    sweep = Sweep.open(folder)
    evaluated = [sweep.run_dir(n) for n in sweep.names if Run(sweep.run_dir(n)).eval_record.is_file()]
    missing = len(sweep.names) - len(evaluated)
    if not evaluated:
        raise PrakitError(f"no run of {folder} is evaluated yet: sweep with --then sample,eval, "
                          f"or see `prakit sweep status {folder}`")
    table = compare(evaluated, versus=versus)
    print(format_comparison(table))
    if missing:
        print(f"({missing} of {len(sweep.names)} runs not evaluated yet: `prakit sweep status {folder}`)")
    for path in write_comparison(table, folder):
        print(f"wrote {path}")
    return 0


def cancel(folder: str) -> int:
    from prakit.sweep import Sweep, cancel_sweep

    cancelled = cancel_sweep(Sweep.open(folder))
    print(f"cancelled {len(cancelled)} jobs" + (f": {', '.join(cancelled)}" if cancelled else ""))
    return 0
