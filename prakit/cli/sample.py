"""``prakit sample RUN --num N --out STORE``: draw images from a run into a resumable sample store."""

from __future__ import annotations

import argparse

from prakit.choices import EMA_CHOICES, GUIDANCE_SCHEDULES, SAMPLER_COMPILE


def add_parser(groups: argparse._SubParsersAction) -> None:
    sample = groups.add_parser("sample", help="draw images from a run into a resumable sample store",
                               description="Sample class-balanced images; rerun to resume.")
    sample.add_argument("source", help="a run directory (its latest checkpoint) or a checkpoint file")
    sample.add_argument("--num", type=int, required=True, help="how many images")
    sample.add_argument("--out", required=True, help="the sample store to create or resume")
    sample.add_argument("--guidance", type=float,
                        help="classifier-free guidance scale (default: the run's sample.cfg_scale)")
    sample.add_argument("--guidance-schedule", choices=GUIDANCE_SCHEDULES,
                        help="how guidance moves over the tokens (default: the run's sample.cfg_schedule)")
    sample.add_argument("--temperature", type=float, help="head sampling temperature")
    sample.add_argument("--steps", type=int, help="head sampling steps per token")
    sample.add_argument("--batch-size", type=int, help="images per batch")
    sample.add_argument("--seed", type=int, help="sampling seed (images are seeded per index)")
    sample.add_argument("--ema", help=f"EMA weights: {', '.join(EMA_CHOICES)} or a name like ema_0.9999 "
                        "(default: the run's sample.ema)")
    sample.add_argument("--compile", choices=SAMPLER_COMPILE,
                        help="torch.compile the decoding step and the head's network in this mode "
                             "(reduce-overhead: CUDA graphs; default: the run's sample.compile)")
    sample.add_argument("--classes", type=int, nargs="+", help="sample only these classes")
    sample.add_argument("--npz", help="also export the ADM suite's .npz here")
    sample.add_argument("--grid", help="also write a PNG grid, one row per class")
    sample.add_argument("--restart", action="store_true",
                        help="delete a store made from another checkpoint or with other options, and start over")
    sample.set_defaults(run=run_sample)


#: The ``prakit sample`` options that set a field of the ``sample`` section, by field.
SAMPLE_FLAGS = {"num": "--num", "cfg_scale": "--guidance", "cfg_schedule": "--guidance-schedule", "temperature": "--temperature",
                "steps": "--steps", "seed": "--seed", "batch_size": "--batch-size", "ema": "--ema",
                "compile": "--compile"}


def run_sample(args: argparse.Namespace) -> int:
    from prakit.config import SampleConfig
    from prakit.sample import sample_run, sampling_options, with_options

    given = {field: getattr(args, flag[2:].replace("-", "_")) for field, flag in SAMPLE_FLAGS.items()}
    given = {k: v for k, v in given.items() if v is not None}
    with_options(SampleConfig(), given, SAMPLE_FLAGS.get)  # bad values fail before the checkpoint loads
    num = given.pop("num")
    out = sample_run(args.source, args.out, num=num, classes=args.classes,
                     options=sampling_options(args.source, given), restart=args.restart)
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
