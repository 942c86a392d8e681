"""``prakit data prepare|info|export``: make, inspect and export zarr image stores."""

from __future__ import annotations

import argparse
import json

from prakit.choices import CHANNELS

PREPARE_EPILOG = """\
examples:
  prakit data prepare imagefolder ~/imagenet/train data/in256.zarr --size 256 --shuffle-seed 0
  prakit data prepare digits data/digits-16.zarr --size 16
  prakit data prepare photo_crops data/photos-32.zarr --size 32 --set seed=1 --set per_photo=500

Rerun the same command after an interruption to continue where it stopped."""


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("data", help="prepare, inspect and export zarr image stores")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    prepare = commands.add_parser(
        "prepare", help="turn a dataset source into a store (parallel, resumable)",
        description="Read a dataset source, resize and centre-crop every image as ADM does, and write a store.",
        epilog=PREPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prepare.add_argument("dataset", help="the source: imagefolder, digits, photo_crops, ... (`prakit plugins list --kind dataset`)")
    prepare.add_argument("args", nargs="+", metavar="ARG",
                         help="values of the source's required fields in order (imagefolder: its folder), "
                              "then the output store")
    prepare.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                         help="set another field of the source (a TOML value), e.g. --set seed=1; repeatable")
    prepare.add_argument("--size", type=int, required=True, help="output resolution: SIZE x SIZE pixels")
    prepare.add_argument("--channels", type=int, choices=CHANNELS, default=3, help="1 (grey) or 3 (RGB, default)")
    prepare.add_argument("--workers", type=int, help="worker processes (default: one per CPU; 0: none)")
    prepare.add_argument("--shuffle-seed", type=int,
                         help="store the samples in a random order from this seed (lets training read whole chunks)")
    prepare.add_argument("--shard-size", type=int, help="samples per shard (default: about 512 MiB of pixels)")
    prepare.add_argument("--no-progress", action="store_true", help="no progress bar")
    prepare.set_defaults(run=run_prepare)

    info = commands.add_parser("info", help="count, shape, classes, size on disk and fingerprint of a store")
    info.add_argument("store", help="a prakit store")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--verify", action="store_true", help="re-read every sample and check the fingerprint")
    info.set_defaults(run=run_info)

    export = commands.add_parser("export", help="write a store as the ADM suite's .npz or as a .png grid")
    export.add_argument("store", help="a prakit store (prepared or generated)")
    export.add_argument("out", help="OUT.npz (arr_0: N x H x W x 3 uint8) or OUT.png (one row per class)")
    export.add_argument("--per-class", type=int, default=8, help="images per row of a .png grid (default 8)")
    export.add_argument("--max-classes", type=int, default=10, help="rows of a .png grid (default 10)")
    export.set_defaults(run=run_export)


def run_prepare(args: argparse.Namespace) -> int:
    from prakit.cli.paths import check_output
    from prakit.data import prepare

    *values, out = args.args
    check_output(out)
    report = prepare(
        source_config(args.dataset, values, args.set), out, size=args.size, channels=args.channels, workers=args.workers,
        shuffle_seed=args.shuffle_seed, shard=args.shard_size, progress=not args.no_progress,
    )
    print(report.format())
    return 0


def source_config(name: str, values: list[str], sets: list[str] = ()):
    """The dataset config from the command line: ``values`` fill the required fields in order,
    ``sets`` (``FIELD=VALUE``, a TOML value, else a string) set any field."""
    import attrs

    from prakit import registry
    from prakit.config import structure
    from prakit.config.io import parse_override
    from prakit.errors import ConfigError
    from prakit.kinds import DatasetConfig

    cls = registry.get("dataset").entry(name).config_class
    required = [f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING]
    if len(values) != len(required):
        wanted = " ".join(f.upper() for f in required) or "no values"
        raise ConfigError([("", f"{name} takes {wanted} before the output store, got {values or 'none'}")], f"dataset {name}")
    fields = {".".join(key): value for key, value in map(parse_override, sets)}
    data = {"name": name, **dict(zip(required, values)), **fields}
    return structure(data, DatasetConfig, source=f"dataset {name}")


def run_info(args: argparse.Namespace) -> int:
    from prakit.data import disk_size, open_store

    store = open_store(args.store)
    if args.verify:
        store.verify()
    info = describe(store, disk_size(store.path))
    print(json.dumps(info, indent=2) if args.json else format_info(info, verified=args.verify))
    return 0


def describe(store, size_on_disk: int) -> dict:
    """The facts ``prakit data info`` shows, as JSON data."""
    counts = store.class_counts()
    attrs = store.attrs
    return {
        "path": str(store.path),
        "kind": attrs.get("kind"),
        "format_version": attrs["format_version"],
        "count": len(store),
        "shape": list(store.image_shape),
        "chunk": store.chunk_length,
        "shard": store.shard_length,
        "classes": len(store.class_names),
        "class_names": list(store.class_names),
        "per_class": {"min": int(counts.min()), "max": int(counts.max())} if len(counts) else None,
        "source": attrs.get("source") or attrs.get("checkpoint"),
        "preprocessing": attrs.get("preprocessing"),
        "shuffle_seed": attrs.get("shuffle_seed"),
        "skipped": len(attrs.get("skipped", [])),
        "bytes_on_disk": size_on_disk,
        "fingerprint": attrs["fingerprint"],
    }


def format_info(info: dict, verified: bool = False) -> str:
    h, w, c = info["shape"]
    names = info["class_names"]
    shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
    per_class = info["per_class"]
    rows = [
        ("store", f"{info['path']} ({info['kind']}, format version {info['format_version']})"),
        ("images", f"{info['count']:,} x {h}x{w}x{c} uint8, chunks of {info['chunk']}, shards of {info['shard']:,}"),
        ("classes", f"{info['classes']}: {shown}" + (f" ({per_class['min']}-{per_class['max']} images each)" if per_class else "")),
        ("source", json.dumps(info["source"])),
        ("preprocessing", json.dumps(info["preprocessing"])),
        ("shuffle seed", str(info["shuffle_seed"])),
        ("skipped", str(info["skipped"])),
        ("size on disk", f"{info['bytes_on_disk'] / 2**20:,.1f} MiB"),
        ("fingerprint", info["fingerprint"] + (" (verified)" if verified else
                                               " (metadata checked only; --verify re-reads every sample)")),
    ]
    return "\n".join(f"{key:<14}{value}" for key, value in rows)


def run_export(args: argparse.Namespace) -> int:
    from prakit.cli.paths import check_output
    from prakit.data import export_grid, export_npz
    from prakit.errors import PrakitError

    check_output(args.out, file=".png" if args.out.endswith(".png") else ".npz")
    if args.out.endswith(".npz"):
        path = export_npz(args.store, args.out)
    elif args.out.endswith(".png"):
        path = export_grid(args.store, args.out, per_class=args.per_class, max_classes=args.max_classes)
    else:
        raise PrakitError(f"cannot tell the format of {args.out!r}: name it .npz or .png")
    print(f"wrote {path}")
    return 0
