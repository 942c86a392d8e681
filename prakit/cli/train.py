"""``prakit train CONFIG [KEY=VALUE ...]``: train a model, resuming its run directory."""

from __future__ import annotations

import argparse

from prakit.cli.config import OVERRIDES_HELP


def add_parser(groups: argparse._SubParsersAction) -> None:
    train = groups.add_parser("train", help="train a model from an experiment config",
                              description="Train; resumes from the run directory's latest checkpoint.")
    train.add_argument("file", help="experiment config")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    train.add_argument("--run-dir", help="where checkpoints, metrics and grids go (default: runs/<config name>)")
    train.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                       help="continue from the latest checkpoint in the run directory (default: yes)")
    train.add_argument("--force", action="store_true", help="take over a run directory of a different config")
    train.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from prakit.cli.paths import default_run_dir
    from prakit.config import load_config
    from prakit.run import Run
    from prakit.training.loop import train

    cfg = load_config(args.file, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.file)
    result = train(cfg, run_dir, resume=args.resume, force=args.force)
    if result.is_main:
        print(f"run: {result.run_dir}\ncheckpoint: {result.checkpoint}\nmetrics: {Run(result.run_dir).metrics_file}")
    return 0
