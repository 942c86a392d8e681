"""``prakit config show|validate FILE [OVERRIDES]``: the resolved experiment config."""

from __future__ import annotations

import argparse

from prakit.choices import MODEL_KINDS

OVERRIDES_HELP = "dotted overrides, e.g. model.rollout.name=pra model.rollout.sigma_max=0.3"


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("config", help="resolve and check experiment configs")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name, run, help in (
        ("show", run_show, "print the resolved config (file + overrides + defaults) as TOML"),
        ("validate", run_validate, "check a config; exit 2 with every problem by path"),
    ):
        command = commands.add_parser(name, help=help, description=help)
        command.add_argument("file", help="experiment config (.toml, .json or .yaml)")
        command.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
        command.set_defaults(run=run)


def run_show(args: argparse.Namespace) -> int:
    from prakit.config import dumps, load_config

    print(dumps(load_config(args.file, args.overrides)), end="")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from prakit.config import load_config
    from prakit.model import parameter_counts
    from prakit.summary import GIB, meta_model, si, training_state_bytes

    cfg = load_config(args.file, args.overrides)
    total = parameter_counts(meta_model(cfg))["total"]  # on meta: every cross-field problem, nothing allocated
    model = cfg.model
    parts = ", ".join(f"{kind}={getattr(model, kind).name}" for kind in MODEL_KINDS)
    state = training_state_bytes(cfg, total) / GIB
    print(f"ok: {args.file} ({parts}; {si(total)} parameters, training state >= {state:,.2f} GiB)")
    return 0
