"""``prakit compare RUN_DIR ...``: one table across evaluated runs."""

from __future__ import annotations

import argparse

#: The ``--versus`` flag, shared with ``prakit sweep collect``.
VERSUS_HELP = ("also show every other row's difference to row NAME (a row's name, its variant's or one of its "
               "run directories), paired by seed, with a 95%% confidence interval and a paired t-test's p-value")


def add_parser(groups: argparse._SubParsersAction) -> None:
    compare = groups.add_parser(
        "compare", help="one table across evaluated runs: differing config fields, numbers, size and time",
        description="Tabulate the runs' eval.json side by side; runs that differ only in train.seed "
        "pool into one row: mean, 95% confidence interval (Student t) and n.",
    )
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR", help="evaluated run directories")
    compare.add_argument("--out", help="also write comparison.{md,csv,json} and rollout_gap.{png,svg} into this folder")
    compare.add_argument("--versus", metavar="NAME", help=VERSUS_HELP)
    compare.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from prakit.eval.compare import compare, format_comparison, write_comparison

    table = compare(args.runs, versus=args.versus)
    print(format_comparison(table))
    if args.out:
        for path in write_comparison(table, args.out):
            print(f"wrote {path}")
    return 0
