"""``prakit model summary CONFIG [OVERRIDES]``: parameters, shapes and FLOPs of a model."""

from __future__ import annotations

import argparse
import json

from prakit.cli.config import OVERRIDES_HELP


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("model", help="inspect the model an experiment config describes")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    summary = commands.add_parser(
        "summary",
        help="parameters per component, token and state dims, sequence length, FLOPs",
        description="Build the model on the meta device (no memory) and count parameters and FLOPs.",
    )
    summary.add_argument("file", help="experiment config")
    summary.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.add_argument("--no-flops", action="store_true", help="skip counting FLOPs")
    summary.set_defaults(run=run_summary)


def run_summary(args: argparse.Namespace) -> int:
    from prakit.config import load_config
    from prakit.summary import summarize

    cfg = load_config(args.file, args.overrides)
    summary = summarize(cfg, flops=not args.no_flops)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary, cfg.sample.cfg_scale))
    return 0


def format_summary(s: dict, cfg_scale: float) -> str:
    from prakit.summary import si

    params, comps = s["parameters"], s["components"]
    lines = [f"{'component':<10} {'name':<16} {'parameters':>12}"]
    lines += [f"{kind:<10} {comps[kind]:<16} {si(params[kind]):>12}" for kind in comps]
    lines.append(f"{'total':<10} {'':<16} {si(params['total']):>12}")
    h, w, c = s["image"]
    gh, gw = s["grid"]
    lines.append("")
    lines.append(f"image {h}x{w}x{c}, patch {s['patch_size']}: {gh}x{gw} = {s['seq_len']} tokens of "
                 f"{s['token_dim']} dims; state {s['state_dim']} dims; width {s['width']}")
    if "flops" in s:
        f = s["flops"]
        lines.append(f"training FLOPs: {si(f['train_per_image'])} per image, {si(f['train_per_step'])} per step")
        lines.append(f"sampling FLOPs: {si(f['sample_per_image'])} per image ({f['sample_head_steps']} head steps, "
                     f"{f['head_evaluations_per_token']} head evaluations per token, cfg {cfg_scale:g})")
    return "\n".join(lines)
