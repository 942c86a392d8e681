"""Sampler-side causes of a flow-head run's low recall, measured on its own trained weights.

Each variant is a copy of the run's latest checkpoint with other flow-head sampling fields (or
sampling options), evaluated as ``prakit eval`` evaluates a run: the same samples' seeds, the
run's feature network, FID and precision/recall. Training is untouched, so any difference comes
from the sampler alone. ``clean-unclamped`` feeds the generated tokens back without clamping
them to [-1, 1]; ``a05016a`` does so with an Euler last step, the sampler the flow head had
before the clean last step and the token clamp. ``--calibration`` measures the head alone on
teacher-forced contexts; ``--noise STD`` the metrics' response to pixel noise alone.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/xpred_sampler.py /tmp/xpred-a --num 500

Writes ``xpred_sampler.json`` and ``.md`` (see benchmarks/common.py); reruns reuse finished samples.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from unittest import mock

import attrs
import numpy as np
import torch
from common import report

from prakit.config.converter import unstructure
from prakit.config.io import from_data
from prakit.eval.evaluate import evaluate, resolve
from prakit.model import ARModel
from prakit.run import Run, resolve_checkpoint
from prakit.training.checkpoint import load_checkpoint

#: name -> (flow-head fields, sampling overrides, tokens fed back unclamped)
VARIANTS: dict[str, tuple[dict, list[str], bool]] = {
    "clean": ({"last_step": "clean"}, [], False),
    "clean-seed-1": ({"last_step": "clean"}, ["sample.seed=1"], False),
    "clean-unguided": ({"last_step": "clean"}, ["sample.cfg_scale=1"], False),
    "clean-interval": ({"last_step": "clean", "guidance_interval": (0.1, 1.0)}, [], False),
    "clean-unclamped": ({"last_step": "clean"}, [], True),
    "euler": ({"last_step": "euler"}, [], False),
    "euler-seed-1": ({"last_step": "euler"}, ["sample.seed=1"], False),
    "jit": ({"last_step": "euler", "guidance_interval": (0.1, 1.0)}, [], False),
    "jit-seed-1": ({"last_step": "euler", "guidance_interval": (0.1, 1.0)}, ["sample.seed=1"], False),
    "a05016a": ({"last_step": "euler"}, [], True),
}


def unclamped_feedback(self: ARModel, z: torch.Tensor) -> torch.Tensor:
    return self.decoder.decode(self.decoder.project(z))


def variant_run(run_dir: Path, out: Path, fields: dict) -> Path:
    """A run directory at ``out`` holding the run's latest checkpoint with ``fields`` in its flow head."""
    checkpoint = resolve_checkpoint(run_dir)
    target = Run(out).checkpoint_dir / checkpoint.name
    if not target.is_file():
        state = load_checkpoint(checkpoint)
        cfg = from_data(json.loads(state["config"]))
        cfg = attrs.evolve(cfg, model=attrs.evolve(cfg.model, generator=attrs.evolve(cfg.model.generator, **fields)))
        state["config"] = json.dumps(unstructure(cfg))
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, target)
        Run(out).save_config(cfg)
    return out


@torch.no_grad()
def calibration(run_dir: Path, num: int, draws: int, cfg_scale: float, fields: dict) -> dict:
    """The head alone, on teacher-forced contexts of ``num`` real images: the mean squared
    distance of a drawn token (as fed back) to the true one over twice the drawn tokens' variance
    given the context (``draws`` draws each), over all positions and by position. Where the head draws from the true conditional
    distribution the ratio is 1; above 1 its draws are too narrow for the data (too little
    variety), below 1 too wide."""
    from prakit.data.store import open_store
    from prakit.random import sample_generators
    from prakit.run import load_model

    model, cfg, _ = load_model(resolve_checkpoint(run_dir), None, torch.device("cpu"))
    model.generator.cfg = attrs.evolve(model.generator.cfg, **fields)
    images, labels = open_store(cfg.data.store).read(range(num))
    x = model.patchify(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    labels = torch.from_numpy(labels).long()
    h = model.backbone(x[:, :-1], labels)
    h_uncond = model.backbone(x[:, :-1], torch.full_like(labels, model.null_class)) if cfg_scale != 1 else None
    drawn = torch.stack([model.states_to_tokens(model.generator.sample(h, cfg_scale=cfg_scale, h_uncond=h_uncond,
                                                                       rng=sample_generators(k, range(num))))
                         for k in range(draws)])  # (draws, num, L, token_dim)
    error = (drawn - x).pow(2).sum(-1).mean(dim=(0, 1))
    spread = drawn.var(dim=0).sum(-1).mean(dim=0)
    return {"fields": json.dumps(fields), "cfg_scale": cfg_scale, "num": num, "draws": draws,
            "ratio": round(error.sum().item() / (2 * spread.sum().item()), 3),
            "ratio_by_position": [round(r, 2) for r in (error / (2 * spread)).tolist()],
            "error_mean": round(error.mean().item(), 4), "spread_mean": round(spread.mean().item(), 4)}


def noisy_copy(samples: Path, out: Path, std: float) -> Path:
    """A copy of the sample store ``samples`` with N(0, std^2) noise (images in [-1, 1]) added
    to every finished image, requantised: the metrics' response to noise alone, no variety added."""
    from prakit.data import SampleStore
    from prakit.data.store import open_store, read_attrs

    store = open_store(samples)
    images, labels = store.read(range(len(store)))
    noise = np.random.default_rng(0).normal(0.0, std * 127.5, images.shape)
    noisy = (images + noise).round().clip(0, 255).astype(np.uint8)
    facts = {k: v for k, v in read_attrs(samples).items() if k in ("config", "checkpoint", "sampling")}
    copy = SampleStore.open(out, num=len(images), image_shape=images.shape[1:], attrs=facts, on_mismatch="restart")
    copy.write(range(len(images)), noisy, labels)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/xpred_sampler"), help="the variants' run copies")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--calibration", action="store_true", help="measure the head's calibration instead")
    parser.add_argument("--noise", type=float, help="evaluate the clean variant's samples with this much noise added")
    args = parser.parse_args()
    if args.noise is not None:
        (samples,) = (args.work / "clean" / "samples").glob(f"*-n{args.num}-*.zarr")
        out = noisy_copy(samples, args.work / f"clean-noise-{args.noise}.zarr", args.noise)
        record = evaluate(resolve(out), evaluators=["fid", "precision_recall"])
        print({"samples": str(samples), "noise": args.noise, **record["numbers"]})
        return
    if args.calibration:
        rows = [calibration(args.run_dir, args.num, 8, scale, {"last_step": last})
                for last in ("clean", "euler") for scale in (1.0, 2.0)]
        for row in rows:
            print(row, flush=True)
        report("xpred_calibration", rows, settings={"run": str(args.run_dir), "num": args.num})
        return
    rows = []
    for name in args.variants.split(","):
        fields, overrides, unclamped = VARIANTS[name]
        out = variant_run(args.run_dir, args.work / name, fields)
        patch = mock.patch.object(ARModel, "states_to_tokens", unclamped_feedback) if unclamped else contextlib.nullcontext()
        with patch:
            record = evaluate(resolve(out, overrides, num=args.num), evaluators=["fid", "precision_recall"])
        numbers = record["numbers"]
        rows.append({"variant": name, "fields": json.dumps(fields), "overrides": " ".join(overrides),
                     "unclamped": unclamped, "num": args.num, **{k: round(v, 4) for k, v in numbers.items()}})
        print(rows[-1], flush=True)
    report("xpred_sampler", rows, settings={"run": str(args.run_dir), "num": args.num})


if __name__ == "__main__":
    main()
