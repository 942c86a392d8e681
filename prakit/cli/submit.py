"""``prakit submit``: training jobs on SLURM (or here) through submitit."""

from __future__ import annotations

import argparse
from pathlib import Path

from prakit.choices import CLUSTERS
from prakit.cli.config import OVERRIDES_HELP
from prakit.cli.paths import default_run_dir


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
    submit.set_defaults(run=run_submit)


def run_submit(args: argparse.Namespace) -> int:
    import submitit

    from prakit.config import load_config
    from prakit.errors import PrakitError
    from prakit.launch import submit

    files = [item for item in args.items if "=" not in item]
    overrides = [item for item in args.items if "=" in item]
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
    if not args.wait:
        return 0
    failed = 0
    for job, (_, run_dir) in zip(jobs, runs):
        try:
            result = job.results()[0]  # rank 0 reports the run
        except submitit.core.utils.UncompletedJobError as exc:
            failed += 1
            print(f"job {job.job_id} failed: {failure(exc)}\n  see {near(job.paths.stderr)}")
        else:
            print(f"job {job.job_id} finished: run {run_dir}, step {result.step}, checkpoint {near(result.checkpoint)}")
    return 1 if failed else 0


def near(path: Path) -> Path:
    """``path`` relative to the working directory when it lies inside it, as the run directories are shown."""
    path = Path(path).absolute()
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def failure(exc: Exception) -> str:
    """The last line of a failed job's traceback (submitit appends a block of log paths)."""
    lines = [line for line in str(exc).rsplit("\n" + "-" * 22, 1)[0].splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
