"""``prakit eval RUN|STORE``: a run's numbers (sampling first if needed), or a guidance search."""

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
