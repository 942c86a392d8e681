"""The paper's comparison as config files: they differ only in the swapped components, and
every baseline learns (overfits a tiny fixed batch)."""

from pathlib import Path

import attrs
import pytest
import torch

from prakit.config import load_config
from prakit.model import ARModel

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["pixel-ar", "x-pred", "noise-inj", "exact-rollout", "lowdim-only", "pra"]
SWAPPED = ("decoder", "generator", "rollout")
TABLE = {  # docs/method.md, "Baselines as configurations"
    "pixel-ar": ("identity", "diffusion", "teacher_forcing"),
    "x-pred": ("identity", "flow", "teacher_forcing"),
    "noise-inj": ("identity", "flow", "noise_injection"),
    "exact-rollout": ("mlp", "diffusion", "exact_rollout"),
    "lowdim-only": ("mlp", "diffusion", "teacher_forcing"),
    "pra": ("mlp", "diffusion", "pra"),
}


def without_swapped(cfg):
    return attrs.evolve(cfg, model=attrs.evolve(cfg.model, **{k: None for k in SWAPPED}), description="")


@pytest.mark.parametrize("folder, base", [("imagenet256/comparison", "imagenet256/pra-S.toml"), ("digits", "quickstart.toml")])
def test_comparison_files_differ_only_in_the_swapped_components(folder, base):
    reference = without_swapped(load_config(ROOT / "experiments" / base))
    assert sorted(p.stem for p in (ROOT / "experiments" / folder).glob("*.toml")) == sorted(NAMES)
    for name in NAMES:
        cfg = load_config(ROOT / "experiments" / folder / f"{name}.toml")
        assert tuple(getattr(cfg.model, k).name for k in SWAPPED) == TABLE[name]
        assert without_swapped(cfg) == reference, name
    x_pred = load_config(ROOT / "experiments" / folder / "x-pred.toml")
    assert x_pred.model.generator.prediction == "x"


SMALL = [
    "data.image_size=8",
    "model.backbone.width=64", "model.backbone.depth=2", "model.backbone.heads=2",
    "model.generator.width=64", "model.generator.depth=2",
]
STEPS, FACTOR = 300, 0.3


@pytest.mark.parametrize("name", NAMES)
def test_every_baseline_overfits_a_tiny_fixed_batch(name):
    """Mean loss over the last 20 of 300 steps is below 0.3x that of the first 20."""
    path = ROOT / "experiments" / "digits" / f"{name}.toml"
    overrides = SMALL + (["model.decoder.width=64"] if TABLE[name][0] == "mlp" else [])
    overrides += ["model.rollout.head_steps=5"] if name == "exact-rollout" else []
    cfg = load_config(path, overrides)
    torch.manual_seed(0)
    model = ARModel(cfg.model, image_size=8, channels=3, num_classes=10)
    g = torch.Generator().manual_seed(0)
    blocks = torch.rand(8, 3, 2, 2, generator=g) * 2 - 1
    images = blocks.repeat_interleave(4, -1).repeat_interleave(4, -2)
    labels = torch.arange(8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    losses = []
    for step in range(STEPS):
        loss = model.loss(images, labels, step).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < FACTOR * first, f"{name}: loss {first:.4f} -> {last:.4f}"
