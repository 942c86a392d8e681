"""``prakit submit``: training jobs on SLURM (or here) through submitit."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from prakit.choices import CLUSTERS
from prakit.cli.config import OVERRIDES_HELP
from prakit.cli.paths import default_run_dir
from prakit.config.schema import LaunchConfig, flags
from prakit.run import STAGES

if TYPE_CHECKING:
    import submitit



def add_parser(groups: argparse._SubParsersAction) -> None:
    submit = groups.add_parser(
        "submit", help="submit training jobs through submitit (SLURM, or this machine)",
        description="Submit one training job per config; several configs form one job array. "
        "Arguments with '=' are overrides applied to every config.",
    )
    submit.add_argument("items", nargs="+", metavar="CONFIG|KEY=VALUE", help=f"experiment configs; {OVERRIDES_HELP}")
    submit.add_argument("--run-dir", help="run directory of a single config (default: RUNS/<config name>)")
    submit.add_argument("--runs-in", default="runs", metavar="RUNS", help="the folder of the run directories, one "
                        "per config (default: runs); keeps ablations whose configs share names apart")
    submit.add_argument("--cluster", choices=CLUSTERS,
                        help="where to run (default: the config's launch.cluster)")
    submit.add_argument("--wait", action="store_true", help="wait for the jobs and report how they ended")
    submit.add_argument("--stage", choices=STAGES, default="train",
                        help="train configs (default), or sample or evaluate trained RUN_DIRs")
    submit.add_argument("--num", type=int, help="with --stage sample|eval: samples to draw (default: eval.num, "
                        "else sample.num)")
    submit.add_argument("--shards", type=int, default=1, help="with --stage sample: jobs to split each run's "
                        "sampling into, all filling one store")
    add_launch_flags(submit)
    submit.set_defaults(run=run_submit)


#: ``launch`` fields set by a flag of their own, e.g. ``--gpus-per-node 8``.
def add_launch_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for the ``launch`` section's fields (they override the config's)."""
    group = parser.add_argument_group("resources (the config's launch section, overridden)")
    for option in flags(LaunchConfig):
        group.add_argument(option.name, type=option.type, metavar=option.field.split("_")[0].upper(), help=option.help)
    group.add_argument("--slurm-option", action="append", default=[], metavar="KEY[=VALUE]",
                       help="another sbatch option, e.g. mail-type=END or hold; repeatable")


def launch_overrides(args: argparse.Namespace) -> list[str]:
    """The launch flags given, as ``launch.KEY=VALUE`` overrides."""
    out = [f"launch.{option.field}={json.dumps(getattr(args, option.field))}" for option in flags(LaunchConfig)
           if getattr(args, option.field) is not None]
    for option in args.slurm_option:
        key, _, value = option.partition("=")
        out.append(f"launch.slurm_options.{key.strip()}={json.dumps(value)}")
    return out


def run_submit(args: argparse.Namespace) -> int:
    from prakit.config import load_config
    from prakit.errors import PrakitError
    from prakit.launch import submit

    files = [item for item in args.items if "=" not in item]
    overrides = [item for item in args.items if "=" in item] + launch_overrides(args)
    if args.stage != "train":
        return submit_stage(args, files, overrides)
    if not files:
        raise PrakitError("name at least one experiment config to submit")
    if args.run_dir and len(files) > 1:
        raise PrakitError("--run-dir names the run directory of a single config; submitting several, "
                          "each runs in RUNS/<config name> (--runs-in RUNS, default runs)")
    run_dirs = [Path(args.run_dir)] if args.run_dir else [default_run_dir(f, args.runs_in) for f in files]
    if len(set(run_dirs)) < len(run_dirs):
        raise PrakitError("two configs share a file name and so a run directory; rename one or submit them separately")
    runs = [(load_config(f, overrides), run_dir) for f, run_dir in zip(files, run_dirs)]
    jobs = submit(runs, cluster=args.cluster)
    for job, (_, run_dir) in zip(jobs, runs):
        print(f"job {job.job_id}: run {run_dir}, log {near(job.paths.stdout)}")

    def finished(result, run_dir):  # rank 0 reports the run
        return f"run {run_dir}, step {result[0].step}, checkpoint {near(result[0].checkpoint)}"

    return report([(job, run_dir) for job, (_, run_dir) in zip(jobs, runs)], finished, args, runs[0][0].launch)


def submit_stage(args: argparse.Namespace, run_dirs: list[str], overrides: list[str]) -> int:
    """``prakit submit --stage sample|eval RUN_DIR...``: the stage of each trained run as jobs."""
    from prakit.errors import PrakitError
    from prakit.eval.evaluate import resolve
    from prakit.launch import submit_stage as submit_jobs
    from prakit.run import Run

    if not run_dirs:
        raise PrakitError(f"name at least one trained run directory to {args.stage}")
    if args.run_dir:
        raise PrakitError(f"--run-dir names where a config trains; --stage {args.stage} takes run directories")
    launch_only = [o for o in overrides if o.startswith("launch.")]
    options = [o for o in overrides if not o.startswith("launch.")]
    jobs = []
    for run_dir in map(Path, run_dirs):
        run = Run(run_dir).require()
        resolve(run_dir, options, num=args.num)  # bad sample.*/eval.* overrides fail here, before any job
        launch = run.config(launch_only).launch
        for job in submit_jobs(run_dir, args.stage, launch, cluster=args.cluster, num=args.num, shards=args.shards,
                               overrides=options):
            jobs.append((job, run_dir))
            print(f"job {job.job_id}: {args.stage} {run_dir}, log {near(job.paths.stdout)}")

    def finished(result, run_dir):
        return f"{args.stage} {run_dir}" + (f", {near(result[0])}" if args.stage == "sample" else "")

    return report(jobs, finished, args, launch)


def report(jobs: list[tuple[submitit.Job, Path]], finished: Callable[[list, Path], str], args: argparse.Namespace,
           launch: LaunchConfig) -> int:
    """With ``--wait`` (always on the ``debug`` cluster, whose jobs run here and now): wait for each
    job and print how it ended; exit status 1 if any failed."""
    import submitit

    if not args.wait and (args.cluster or launch.cluster) != "debug":
        return 0
    failed = 0
    for job, run_dir in jobs:
        try:
            result = job.results()
        except submitit.core.utils.UncompletedJobError as exc:
            failed += 1
            print(f"job {job.job_id} failed: {failure(exc)}\n  see {near(job.paths.stderr)}")
        else:
            print(f"job {job.job_id} finished: {finished(result, run_dir)}")
    return 1 if failed else 0


def near(path: Path) -> Path:
    """``path`` relative to the working directory when it lies inside it, as the run directories are shown."""
    path = Path(path).absolute()
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def failure(exc: Exception) -> str:
    """The last line of a failed job's traceback (submitit appends a block of log paths)."""
    lines = [line for line in str(exc).rsplit("\n" + "-" * 22, 1)[0].splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
