"""``prakit compare RUN_DIR ...``: one table across evaluated runs."""

from __future__ import annotations

import argparse


def add_parser(groups: argparse._SubParsersAction) -> None:
    compare = groups.add_parser(
        "compare", help="one table across evaluated runs: differing config fields, numbers, size and time",
        description="Tabulate the runs' eval.json side by side; runs that differ only in train.seed "
        "are grouped as mean +- std.",
    )
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR", help="evaluated run directories")
    compare.add_argument("--out", help="also write comparison.{md,csv,json} and rollout_gap.png into this folder")
    compare.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from prakit.eval.compare import compare, format_comparison, write_comparison

    table = compare(args.runs)
    print(format_comparison(table))
    if args.out:
        for path in write_comparison(table, args.out):
            print(f"wrote {path}")
    return 0
