"""``prakit train`` and ``prakit sample``: the main job."""

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

    sample = groups.add_parser("sample", help="draw images from a run into a resumable sample store",
                               description="Sample class-balanced images; rerun to resume.")
    sample.add_argument("source", help="a run directory (its latest checkpoint) or a checkpoint file")
    sample.add_argument("--num", type=int, required=True, help="how many images")
    sample.add_argument("--out", required=True, help="the sample store to create or resume")
    sample.add_argument("--cfg", type=float, help="guidance scale (default: the run's sample.cfg_scale)")
    sample.add_argument("--cfg-schedule", choices=("constant", "linear"), help="guidance schedule")
    sample.add_argument("--temperature", type=float, help="head sampling temperature")
    sample.add_argument("--steps", type=int, help="head sampling steps per token")
    sample.add_argument("--batch-size", type=int, help="images per batch")
    sample.add_argument("--seed", type=int, help="sampling seed (images are seeded per index)")
    sample.add_argument("--ema", help="EMA weights: 'slow', 'fast', 'none' or a name like ema_0.9999 "
                        "(default: the run's sample.ema)")
    sample.add_argument("--classes", type=int, nargs="+", help="sample only these classes")
    sample.add_argument("--npz", help="also export the ADM suite's .npz here")
    sample.add_argument("--grid", help="also write a PNG grid, one row per class")
    sample.add_argument("--restart", action="store_true",
                        help="delete a store made from another checkpoint or with other options, and start over")
    sample.set_defaults(run=run_sample)


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from prakit.config import load_config
    from prakit.train.loop import train

    cfg = load_config(args.file, args.overrides)
    run_dir = Path(args.run_dir or Path("runs") / Path(args.file).stem)
    result = train(cfg, run_dir, resume=args.resume, force=args.force)
    if result.is_main:
        print(f"run: {result.run_dir}\ncheckpoint: {result.checkpoint}\nmetrics: {result.run_dir / 'metrics.jsonl'}")
    return 0


#: The ``prakit sample`` options that set a field of the ``sample`` section, by field.
SAMPLE_FLAGS = {"num": "--num", "cfg_scale": "--cfg", "cfg_schedule": "--cfg-schedule", "temperature": "--temperature",
                "steps": "--steps", "seed": "--seed", "batch_size": "--batch-size", "ema": "--ema"}


def run_sample(args: argparse.Namespace) -> int:
    from prakit.config import SampleConfig
    from prakit.sample import sample_run, with_options

    given = {field: getattr(args, flag[2:].replace("-", "_")) for field, flag in SAMPLE_FLAGS.items()}
    given = {k: v for k, v in given.items() if v is not None}
    with_options(SampleConfig(), given, SAMPLE_FLAGS.get)  # bad values fail before the checkpoint loads
    out = sample_run(args.source, args.out, num=given.pop("num"), classes=args.classes,
                     overrides=given, restart=args.restart)
    print(f"samples: {out}")
    if args.npz:
        from prakit.data import export_npz

        export_npz(out, args.npz)
        print(f"npz: {args.npz}")
    if args.grid:
        from prakit.data import export_grid

        export_grid(out, args.grid)
        print(f"grid: {args.grid}")
    return 0
