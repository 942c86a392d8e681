"""The ``prakit`` command line: one subcommand group per module, each with ``--help``."""

from __future__ import annotations

import argparse
import sys
import warnings

from prakit import __version__
from prakit.cli import config, data, evaluate, launch, model, plugins, run
from prakit.errors import PrakitError

COMMAND_GROUPS = (run, evaluate, launch, plugins, config, model, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prakit",
        description="Pixel-space autoregressive image generation with swappable components.",
    )
    parser.add_argument("--version", action="version", version=f"prakit {__version__}")
    groups = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.add_parser(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = lambda message, category, *_args, **_kw: f"prakit: warning: {message}\n"
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except PrakitError as exc:
        print(f"prakit: error: {exc}", file=sys.stderr)
        return 2
