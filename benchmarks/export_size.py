"""The size and load time of a model export (`prakit export`) against the full checkpoint training writes.

The checkpoint is built as training saves one, without training: the config's model at its random
initialisation, one EMA per ``optim.ema_decays``, and AdamW's state after one step on zero
gradients (at lr 0: every moment has the shape and dtype training holds, its values are zero),
saved by ``save_checkpoint``. Its ``sample.ema`` weights are exported in bf16 and in fp32. Each
file is loaded as sampling and evaluation load it (``load_model`` on the CPU: the model built at
random init, then the weights copied in), a few times, the median kept; the files were just
written, so they load from the page cache. For comparison, the checkpoint is also loaded whole
(``torch.load`` without memory mapping, as inference did before).
Usage: python benchmarks/export_size.py [--preset pra-S] [--loads 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import report

from prakit.config import from_data, load_config
from prakit.exporting import WEIGHTS, export
from prakit.model import ARModel, parameter_counts
from prakit.run import choose_ema, load_model
from prakit.training import rng
from prakit.training.checkpoint import load_checkpoint, load_weights, save_checkpoint
from prakit.training.distributed import Distributed
from prakit.training.loop import checkpoint_state
from prakit.training.step import TrainingStep

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "imagenet256" / "pra-S.toml"
CPU = torch.device("cpu")
BUILT = ("random init, one EMA per optim.ema_decays (copies of the initial weights), AdamW state from one step "
         "on zero gradients at lr 0 (the shapes and dtypes training holds, values zero), saved by save_checkpoint")


def full_checkpoint(cfg, folder: Path) -> Path:
    """The checkpoint training would write of ``cfg``'s model at step 1 (see the module's docstring)."""
    training = TrainingStep.create(cfg, Distributed(rank=0, world_size=1, local_rank=0, device=CPU))
    for p in training.model.parameters():
        p.grad = torch.zeros_like(p)
    training.optimizer.step()
    return save_checkpoint(folder, 1, checkpoint_state(1, training, [rng.capture()]), keep_last=1)


def load_whole(checkpoint: Path) -> None:
    """Inference's loading before memory mapping: every tensor of the checkpoint read."""
    state = load_checkpoint(checkpoint)
    cfg = from_data(json.loads(state["config"]))
    model = ARModel.from_config(cfg)
    ema = choose_ema(cfg, cfg.sample.ema)
    load_weights(model, state["model"] if ema is None else state["ema"][ema], checkpoint)


def median_seconds(load, loads: int) -> float:
    times = []
    for _ in range(loads):
        start = time.perf_counter()
        load()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="pra-S", help="the model preset, on experiments/imagenet256/pra-S.toml")
    parser.add_argument("--loads", type=int, default=5, help="loads of each file (the median is kept)")
    args = parser.parse_args()
    cfg = load_config(CONFIG, [f'model.preset="{args.preset}"'])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = full_checkpoint(cfg, folder / "checkpoints")
        exports = {dtype: export(checkpoint, folder / f"export-{dtype}", dtype=dtype) for dtype in ("bf16", "fp32")}
        init_s = median_seconds(lambda: ARModel.from_config(cfg), args.loads)
        cases = [
            ("full checkpoint, load_model (memory-mapped)", checkpoint, lambda: load_model(checkpoint, None, CPU)),
            ("full checkpoint, read whole (torch.load)", checkpoint, lambda: load_whole(checkpoint)),
            *((f"export {dtype}, load_model", path / WEIGHTS, lambda path=path: load_model(path, None, CPU))
              for dtype, path in exports.items()),
        ]
        rows = []
        for what, file, load in cases:
            rows.append({"file": what, "size_mib": file.stat().st_size / 2**20, "load_s": median_seconds(load, args.loads)})
    base = rows[0]
    for row in rows:
        row["size_vs_checkpoint"] = row["size_mib"] / base["size_mib"]
        row["load_vs_checkpoint"] = row["load_s"] / base["load_s"]
    parameters = parameter_counts(ARModel.from_config(cfg))["total"]
    report("export_size", rows, settings={"preset": args.preset, "loads": args.loads},
           parameters=parameters, ema_decays=list(cfg.optim.ema_decays), exported_ema=f"sample.ema = {cfg.sample.ema!r}",
           checkpoint_built=BUILT, model_init_s=init_s,
           note="load_s includes building the model at random init (model_init_s) and copying the weights in; "
                "files read from the page cache (just written)")


if __name__ == "__main__":
    main()
