"""How close a run's pixel decoder alone comes to the data: the FID of ``--num`` real images and
of their reconstructions, decode(encode(x)), against the run's reference, at the sample count
its evaluations use.

A model whose tokens pass through a low-dimensional state cannot sample better than its decoder
reconstructs, so the reconstructions' FID is (up to sampling noise) a floor for its samples; the
real images' FID is the floor that ``--num`` samples set for any model (they are drawn from the
reference itself, so it is a low estimate). An identity decoder reconstructs exactly.

Usage: python benchmarks/decoder_ceiling.py RUN_DIR [RUN_DIR ...] [--num 500]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import report

from prakit.config import unstructure
from prakit.data import SampleStore, open_store
from prakit.data.loader import to_model_input
from prakit.eval.evaluate import evaluate, resolve
from prakit.eval.features import spread
from prakit.model import to_uint8
from prakit.run import Run, inference_device, read_record

BATCH = 100


@torch.no_grad()
def write_images(run: Run, out: Path, num: int) -> dict[str, Path]:
    """Stores of ``num`` real images of the run's dataset and of their reconstructions."""
    device = inference_device()
    model, cfg, _ = run.model(device=device)  # the EMA its samples use
    real = open_store(cfg.data.store)
    facts = {"config": unstructure(cfg), "sampling": {}, "class_names": list(real.class_names)}
    stores = {kind: SampleStore.open(out / f"{kind}.zarr", num=num, image_shape=real.image_shape,
                                     attrs={**facts, "checkpoint": f"{kind} images of {cfg.data.store}"})
              for kind in ("real", "reconstructed")}
    indices = spread(len(real), num)
    for start in range(0, num, BATCH):
        rows = range(start, min(start + BATCH, num))
        images, labels = real.read(indices[rows.start:rows.stop])
        x = model.patchify(to_model_input(torch.from_numpy(images), device))
        rebuilt = to_uint8(model.unpatchify(model.decoder.decode(model.decoder.encode(x))))
        stores["real"].write(rows, images, labels)
        stores["reconstructed"].write(rows, rebuilt.cpu().numpy(), labels)
    return {kind: store.path for kind, store in stores.items()}


def fid(store: Path, out: Path) -> float:
    """The FID of a store of images against the reference of the run it names, as ``prakit eval`` scores it."""
    return evaluate(resolve(store, out=out), evaluators=["fid"], progress=False)["numbers"]["fid"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="trained run directories")
    parser.add_argument("--num", type=int, default=500, help="images per FID (the evaluations' sample count)")
    parser.add_argument("--out", default="runs/decoder_ceiling", help="where the image stores go")
    args = parser.parse_args()
    rows = []
    for path in args.runs:
        run = Run(path).require()
        out = Path(args.out) / Path(path).name
        stores = write_images(run, out, args.num)
        sampled = read_record(run.path)
        rows.append({"run": str(path), "decoder": run.config().model.decoder.name, "num": args.num,
                     "fid_real": round(fid(stores["real"], out / "eval-real"), 3),
                     "fid_reconstructed": round(fid(stores["reconstructed"], out / "eval-reconstructed"), 3),
                     "fid_sampled": round(sampled["numbers"]["fid"], 3) if sampled else "n/a"})
        print(rows[-1], flush=True)
    report("decoder_ceiling", rows, settings={"num": args.num})


if __name__ == "__main__":
    main()
