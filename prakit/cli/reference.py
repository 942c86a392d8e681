"""``prakit reference STORE --out REF.npz``: feature moments and features of real images."""

from __future__ import annotations

import argparse


def add_parser(groups: argparse._SubParsersAction) -> None:
    ref = groups.add_parser(
        "reference", help="write a reference .npz (feature moments and features) of a store of real images",
        description="Extract features of a store's images and write mu, sigma (over COUNT images; mu_s, sigma_s "
        "of the spatial features too, with inception) and the features of up to 10,000 of them, for FID, sFID, "
        "KID and precision/recall.",
    )
    ref.add_argument("store", help="a store of real images")
    ref.add_argument("--out", required=True, help="the .npz to write")
    ref.add_argument("--features", default=None, help="feature network: inception or featnet (default: inception "
                     "when PRAKIT_INCEPTION_WEIGHTS is set, else featnet)")
    ref.add_argument("--count", type=int, help="images the moments are taken over (default: all)")
    ref.add_argument("--batch-size", type=int, default=100, help="images per batch (default 100)")
    ref.add_argument("--no-progress", action="store_true", help="no progress bars")
    ref.set_defaults(run=run_reference)


def run_reference(args: argparse.Namespace) -> int:
    from prakit import registry
    from prakit.config import EvalConfig
    from prakit.data import open_store
    from prakit.errors import PrakitError
    from prakit.eval.context import default_features
    from prakit.eval.reference import StoreReference, reference_count, write_reference
    from prakit.run import inference_device

    if args.batch_size < 1:
        raise PrakitError(f"--batch-size must be at least 1, got {args.batch_size}")
    store = open_store(args.store)
    count = reference_count(store, args.count)  # before the feature network is built (featnet trains)
    cfg = registry.get("features").config(args.features) if args.features else default_features(EvalConfig())
    device = inference_device()
    network = registry.build(cfg, store=store, device=device, progress=not args.no_progress)
    out = write_reference(StoreReference(store), network, cfg.name, args.out, count=count,
                          batch_size=args.batch_size, device=device, progress=not args.no_progress)
    print(f"wrote {out}: {cfg.name} moments over {count:,} images of {args.store}")
    return 0
