"""``prakit sample RUN --num N --out STORE``: draw images from a run into a resumable sample store."""

from __future__ import annotations

import argparse

from prakit.config.schema import SampleConfig, flags


def add_parser(groups: argparse._SubParsersAction) -> None:
    sample = groups.add_parser("sample", help="draw images from a run into a resumable sample store",
                               description="Sample class-balanced images; rerun to resume.")
    sample.add_argument("source", help="a run directory (its latest checkpoint), a checkpoint file or a model export "
                                       "(prakit export)")
    sample.add_argument("--num", type=int, required=True, help="how many images")
    sample.add_argument("--out", required=True, help="the sample store to create or resume")
    for option in flags(SampleConfig):
        sample.add_argument(option.name, type=option.type, choices=option.choices, dest=option.field,
                            metavar=None if option.choices else option.name[2:].replace("-", "_").upper(),
                            help=f"{option.help} (default: the run's sample.{option.field})")
    sample.add_argument("--classes", type=int, nargs="+", help="sample only these classes")
    sample.add_argument("--npz", help="also export the ADM suite's .npz here")
    sample.add_argument("--grid", help="also write a PNG grid, one row per class")
    sample.add_argument("--restart", action="store_true",
                        help="delete a store made from another checkpoint or with other options, and start over")
    sample.set_defaults(run=run_sample)


#: The ``prakit sample`` options that set a field of the ``sample`` section, by field.
SAMPLE_FLAGS = {"num": "--num", **{option.field: option.name for option in flags(SampleConfig)}}


def run_sample(args: argparse.Namespace) -> int:
    from prakit.config import SampleConfig, with_options
    from prakit.sampling import sample_run, sampling_options

    given = {field: getattr(args, field) for field in SAMPLE_FLAGS}
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
