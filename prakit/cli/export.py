"""``prakit export RUN --out DIR``: the weights inference needs as safetensors, with the config and a model card."""

from __future__ import annotations

import argparse


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "export", help="write a run's weights for inference: safetensors, config, model card",
        description="Write one set of weights of a run (an EMA's or the live ones) as model.safetensors, with "
                    "the run's config.toml and a README.md model card, into a folder that prakit.load and "
                    "prakit sample take in place of the run. The folder appears whole or not at all.")
    parser.add_argument("source", help="a run directory (its latest checkpoint), a checkpoint file or an export")
    parser.add_argument("--out", required=True, help="the export folder to write (an earlier export there is replaced)")
    parser.add_argument("--ema", help="slow, fast, none (the live weights) or a name like ema_0.9999 "
                                      "(default: the run's sample.ema)")
    parser.add_argument("--dtype", default="bf16", metavar="bf16|fp32",
                        help="the weights' precision in the file; they load into a float32 model (default: bf16)")
    parser.add_argument("--force", action="store_true", help="replace an --out folder that holds other files")
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from prakit.exporting import describe, export

    out = export(args.source, args.out, ema=args.ema, dtype=args.dtype, force=args.force)
    print(f"export: {out} ({describe(out)})")
    return 0
