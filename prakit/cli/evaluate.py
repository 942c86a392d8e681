"""``prakit eval``, ``prakit reference`` and ``prakit compare``: numbers from runs."""

from __future__ import annotations

import argparse

EVAL_EPILOG = """\
examples:
  prakit eval runs/quickstart
  prakit eval runs/pra-S --ref VIRTUAL_imagenet256_labeled.npz --evaluators fid,inception_score,precision_recall
  prakit eval runs/pra-S --search sample.cfg_scale=1.5,2,2.5,3 --search sample.ema=slow,fast --num 10000"""


def names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_parser(groups: argparse._SubParsersAction) -> None:
    ev = groups.add_parser(
        "eval", help="evaluate a run (sampling first if needed) or a sample store",
        description="Compute the evaluators' numbers; write eval.json, eval.md and plots. "
        "Arguments with '=' override the run's sample and eval sections.",
        epilog=EVAL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("target", help="a run directory (its latest checkpoint) or a sample store")
    ev.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. sample.cfg_scale=3 eval.reference_num=10000")
    ev.add_argument("--evaluators", type=names, help="comma-separated names (default: the config's eval.evaluators, "
                    "else fid,precision_recall; `prakit plugins list --kind evaluator`)")
    ev.add_argument("--ref", help="a store of real images or a reference .npz (default: eval.reference, else data.store)")
    ev.add_argument("--num", type=int, help="samples to draw and evaluate (default: eval.num, else sample.num)")
    ev.add_argument("--out", help="where eval.json and the plots go (default: the run directory)")
    ev.add_argument("--search", action="append", metavar="sample.KEY=V1,V2,...",
                    help="evaluate every combination of these sampling settings and name the best; repeatable")
    ev.add_argument("--select", help="the number the search ranks settings by (default: fid)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    ev.set_defaults(run=run_eval)

    ref = groups.add_parser(
        "reference", help="write a reference .npz (feature moments and features) of a store of real images",
        description="Extract features of a store's images and write mu, sigma (over COUNT images) and the "
        "features of up to 10,000 of them, for FID, KID and precision/recall.",
    )
    ref.add_argument("store", help="a store of real images")
    ref.add_argument("--out", required=True, help="the .npz to write")
    ref.add_argument("--features", default=None, help="feature network: inception or featnet (default: inception "
                     "when PRAKIT_INCEPTION_WEIGHTS is set, else featnet)")
    ref.add_argument("--count", type=int, help="images the moments are taken over (default: all)")
    ref.add_argument("--batch-size", type=int, default=100, help="images per batch (default 100)")
    ref.add_argument("--no-progress", action="store_true", help="no progress bars")
    ref.set_defaults(run=run_reference)

    compare = groups.add_parser(
        "compare", help="one table across evaluated runs: differing config fields, numbers, size and time",
        description="Tabulate the runs' eval.json side by side; runs that differ only in train.seed "
        "are grouped as mean +- std.",
    )
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR", help="evaluated run directories")
    compare.add_argument("--out", help="also write comparison.{md,csv,json} and rollout_gap.png into this folder")
    compare.set_defaults(run=run_compare)


def run_eval(args: argparse.Namespace) -> int:
    from prakit.errors import PrakitError
    from prakit.eval.evaluate import evaluate, format_record, resolve

    progress = not args.no_progress
    if args.search:
        from prakit.eval.search import parse_grid, search

        if args.out:
            raise PrakitError("a search writes into RUN_DIR/search/; drop --out")
        result = search(args.target, parse_grid(args.search), overrides=args.overrides, num=args.num,
                        evaluators=args.evaluators, reference=args.ref, select=args.select, progress=progress)
        print(result["text"])
        return 0
    if args.select:
        raise PrakitError("--select ranks the settings of a --search; add --search sample.KEY=V1,V2")
    target = resolve(args.target, args.overrides, num=args.num, out=args.out)
    record = evaluate(target, evaluators=args.evaluators, reference=args.ref, progress=progress)
    print(format_record(record))
    print(f"written: {', '.join(record['written'])}")
    return 0


def run_reference(args: argparse.Namespace) -> int:
    from prakit import registry
    from prakit.config import EvalConfig
    from prakit.data import open_store
    from prakit.eval.context import default_features
    from prakit.eval.reference import StoreReference, write_reference
    from prakit.sample import inference_device

    store = open_store(args.store)
    cfg = registry.get("features").config(args.features) if args.features else default_features(EvalConfig())
    device = inference_device()
    network = registry.build(cfg, store=store, device=device, progress=not args.no_progress)
    out = write_reference(StoreReference(store), network, cfg.name, args.out, count=args.count,
                          batch_size=args.batch_size, device=device, progress=not args.no_progress)
    print(f"wrote {out}: {cfg.name} moments over {args.count or len(store):,} images of {args.store}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from prakit.eval.compare import compare, format_comparison, write_comparison

    table = compare(args.runs)
    print(format_comparison(table))
    if args.out:
        for path in write_comparison(table, args.out):
            print(f"wrote {path}")
    return 0
