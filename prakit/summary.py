"""What a model config amounts to: parameters per component, shapes, FLOPs, and the memory its
training state needs.

FLOPs are counted by running the model on the meta device under
``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and attention): no memory
is allocated and nothing is timed, so the numbers are exact for the code as written.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from prakit.choices import MODEL_KINDS
from prakit.config import ExperimentConfig, SampleConfig
from prakit.errors import PrakitError
from prakit.model import ARModel, parameter_counts

GIB = 2**30


def meta_model(cfg: ExperimentConfig) -> ARModel:
    """The experiment's model with parameters on the meta device (no memory allocated)."""
    with torch.device("meta"):
        return ARModel.from_config(cfg)


def training_state_bytes(cfg: ExperimentConfig, parameters: int) -> int:
    """A lower bound on the memory training holds: fp32 weights, gradients, AdamW's two moments
    and one copy per EMA (activations come on top)."""
    return 4 * parameters * (4 + len(cfg.optim.ema_decays))


def device_memory(device: torch.device) -> int:
    """Bytes of memory on ``device``: the GPU's, or the machine's RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(cfg: ExperimentConfig, device: torch.device) -> None:
    """Refuse, before anything is allocated, a model whose training state cannot fit ``device``."""
    counts = parameter_counts(meta_model(cfg))
    need, have = training_state_bytes(cfg, counts["total"]), device_memory(device)
    if need > have:
        largest = max(MODEL_KINDS, key=counts.__getitem__)
        raise PrakitError(
            f"the model has {si(counts['total'])} parameters ({si(counts[largest])} in model.{largest}): its weights, "
            f"gradients, optimizer state and EMAs need {need / GIB:,.1f} GiB, more than the {have / GIB:,.1f} GiB "
            f"of {device.type}; make model.{largest} smaller (`prakit model summary` shows the sizes)"
        )


def si(n: float) -> str:
    """A count with an SI suffix, as `prakit model summary` prints it: 132.36M, 1.92T."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def summarize(cfg: ExperimentConfig, flops: bool = True) -> dict[str, Any]:
    model = meta_model(cfg)
    summary: dict[str, Any] = {
        "components": {kind: getattr(cfg.model, kind).name for kind in MODEL_KINDS},
        "parameters": parameter_counts(model),
        "image": [cfg.data.image_size, cfg.data.image_size, cfg.data.channels],
        "patch_size": cfg.model.patch_size,
        "grid": list(model.grid),
        "seq_len": model.seq_len,
        "token_dim": model.token_dim,
        "state_dim": model.decoder.state_dim,
        "width": model.backbone.width,
    }
    if flops:
        per_image = training_flops(model)
        steps = cfg.sample.steps or model.generator.default_steps
        summary["flops"] = {
            "train_per_image": per_image,
            "train_per_step": per_image * cfg.train.batch_size,
            "sample_per_image": sampling_flops(model, cfg.sample, steps),
            "sample_head_steps": steps,
            "head_evaluations_per_token": model.generator.network_evaluations(steps),
        }
    return summary


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def training_flops(model: ARModel) -> int:
    """Forward and backward FLOPs of the training loss for one image."""
    images = torch.zeros(1, model.channels, model.image_size, model.image_size, device="meta")
    labels = torch.zeros(1, dtype=torch.long, device="meta")
    return count_flops(lambda: model.loss(images, labels).total.backward())


def sampling_flops(model: ARModel, options: SampleConfig, steps: int) -> int:
    """FLOPs to sample one image, composed from its parts (a full meta-device run is slow).

    A backbone step's cost is affine in its position (the matmuls, plus attention over the
    cache), so it is measured at positions 1 and 2; the head's cost is affine in its step
    count, measured at 1 and 2 steps. The guided sampler runs conditional and null rows together.
    """
    guided = options.cfg_scale != 1.0
    rows = 1 + guided
    labels = torch.zeros(rows, dtype=torch.long, device="meta")
    token = torch.zeros(rows, model.token_dim, device="meta")

    def backbone(reads: int) -> int:
        def run():
            _, cache = model.backbone.start(labels)
            for _ in range(reads):
                model.backbone.step(token, cache)

        return count_flops(run)

    start, one, two = backbone(0), backbone(1), backbone(2)
    per_position = two - 2 * one + start  # extra attention cost per cached position
    at_one = one - start
    steps_total = sum(at_one + per_position * (i - 1) for i in range(1, model.seq_len))

    h = torch.zeros(1, model.backbone.width, device="meta")

    def head(n: int) -> int:
        kwargs = {"h_uncond": h, "cfg_scale": options.cfg_scale} if guided else {}
        return count_flops(lambda: model.generator.sample(h, steps=n, **kwargs))

    head_one, head_two = head(1), head(2)
    per_token = head_one + (steps - 1) * (head_two - head_one)
    per_token += count_flops(lambda: model.decoder.decode(torch.zeros(1, model.decoder.state_dim, device="meta")))
    return start + steps_total + model.seq_len * per_token
