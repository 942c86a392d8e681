"""``prakit plugins list``: the registered components, the plugins that provide them and the
modules that define them."""

from __future__ import annotations

import argparse
import json


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("plugins", help="inspect installed plugins and their components")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", help="list registered components by kind")
    listing.add_argument("--kind", help="only this component kind, e.g. decoder")
    listing.add_argument("--pattern", default="*", help="glob on component names (default: *)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=run_list)


def run_list(args: argparse.Namespace) -> int:
    from prakit import registry  # imports torch: here, not at the top, to keep `prakit --help` fast

    kinds = [args.kind] if args.kind else list(registry.registries())
    rows = [
        {"name": e.name, "kind": e.kind, "plugin": e.plugin, "module": e.module, "description": e.description}
        for kind in kinds
        for e in registry.get(kind).entries(args.pattern)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(format_table(rows, ("kind", "name", "plugin", "module", "description")))
    else:
        matching = f" match --pattern {args.pattern!r}" if args.pattern != "*" else " registered"
        print(f"no components{matching}" + (f" for kind {args.kind!r}" if args.kind else ""))
    return 0


def format_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    lines = [[c.upper() for c in columns], *([str(r[c]) for c in columns] for r in rows)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)
