"""The ``prakit`` command line: one subcommand group per module, each with ``--help``."""

from __future__ import annotations

import argparse
import sys
import warnings

from prakit import __version__
from prakit.cli import compare, config, data, evaluate, export, model, plugins, reference, sample, submit, sweep, train
from prakit.cli.paths import FILE_ARGUMENTS, OUTPUT_ARGUMENTS, check_output
from prakit.errors import PrakitError, os_problem

COMMAND_GROUPS = (train, sample, export, evaluate, reference, compare, submit, sweep, plugins, config, model, data)
#: The positional arguments that collect KEY=VALUE overrides (``submit``'s mixes them with configs).
OVERRIDE_FIELDS = ("overrides", "items")


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
    args = parse(build_parser(), argv)
    try:
        for name in OUTPUT_ARGUMENTS:
            if getattr(args, name, None) is not None:
                check_output(getattr(args, name), file=FILE_ARGUMENTS.get(name))
        return args.run(args) or 0
    except PrakitError as exc:
        print(f"prakit: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be read or written: the user's to fix, not a bug
        fix = "choose a path that exists or can be created, and that this user may write"
        print(f"prakit: error: {os_problem(exc, fix)}", file=sys.stderr)
        return 2


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``, taking KEY=VALUE overrides anywhere after the command (after its options too)."""
    args, rest = parser.parse_known_args(argv)
    field = next((name for name in OVERRIDE_FIELDS if hasattr(args, name)), None)
    if field:
        late = [arg for arg in rest if "=" in arg and not arg.startswith("-")]
        setattr(args, field, [*getattr(args, field), *late])
        rest = [arg for arg in rest if arg not in late]
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args
