"""The paper's comparison as config files: they differ only in the swapped components, and
every baseline learns (overfits a tiny fixed batch)."""

import json
from pathlib import Path

import attrs
import pytest
import torch

from prakit import registry
from prakit.config import load_config
from prakit.model import ARModel

ROOT = Path(__file__).resolve().parents[1]
SWAPPED = ("decoder", "generator", "rollout")
#: The comparison's folders, the paper's scale and the CPU's.
FOLDERS = ("imagenet256/comparison", "digits")


def files(folder: str) -> list[str]:
    return sorted(path.stem for path in (ROOT / "experiments" / folder).glob("*.toml"))


def header(path: Path) -> str:
    """A config file's comment lines, above its ``extends``."""
    return path.read_text().split("\nextends")[0]


def documented_rows() -> list[tuple[str, bool, tuple[str, str, str]]]:
    """docs/method.md's "Baselines as configurations": each name, whether it is on the digits
    only, and its decoder, head and rollout."""
    section = (ROOT / "docs" / "method.md").read_text().split("## Baselines as configurations")[1].split("\n## ")[0]
    rows = [line.split("|")[1:5] for line in section.splitlines() if line.startswith("| ") and "`" in line]
    return [(name.split(" (")[0].strip(), "(digits)" in name, tuple(cell.split("`")[1] for cell in cells))
            for name, *cells in rows]


def documented_components() -> dict[str, tuple[str, str, str]]:
    return {name: components for name, _, components in documented_rows()}


def test_every_comparison_file_is_documented_and_every_documented_name_has_its_files():
    """The paper's six at both scales; the digits add PRA's variants and the arms that isolate its
    mechanism, marked "(digits)" in the table."""
    rows = documented_rows()
    assert files("digits") == sorted(name for name, _, _ in rows)
    assert files("imagenet256/comparison") == sorted(name for name, digits_only, _ in rows if not digits_only)
    assert len(files("imagenet256/comparison")) == 6


def without_swapped(cfg):
    return attrs.evolve(cfg, model=attrs.evolve(cfg.model, **{k: None for k in SWAPPED}), description="")


@pytest.mark.parametrize("folder, base", [("imagenet256/comparison", "imagenet256/pra-S.toml"), ("digits", "quickstart.toml")])
def test_comparison_files_differ_only_in_the_swapped_components(folder, base):
    reference = without_swapped(load_config(ROOT / "experiments" / base))
    documented = documented_components()
    for name in files(folder):
        cfg = load_config(ROOT / "experiments" / folder / f"{name}.toml")
        assert tuple(getattr(cfg.model, k).name for k in SWAPPED) == documented[name]
        assert without_swapped(cfg) == reference, name
    x_pred = load_config(ROOT / "experiments" / folder / "x-pred.toml")
    assert x_pred.model.generator.prediction == "x"


def test_pixel_noise_on_the_lowdim_model_matches_the_measured_pixel_perturbation_of_pra():
    """benchmarks/pixel_perturbation.py measured pra's config and found the pixel noise its file uses."""
    record = json.loads((ROOT / "benchmarks" / "results" / "pixel_perturbation.json").read_text())
    pra = load_config(ROOT / "experiments" / "digits" / "pra.toml").model.rollout
    assert record["rows"][1]["setting"] == f"pra, run's own: {pra.sigma} [{pra.sigma_min}, {pra.sigma_max}]"
    path = ROOT / "experiments" / "digits" / "lowdim-pixel-noise.toml"
    noise = load_config(path).model.rollout
    assert (noise.schedule, noise.sigma_min, noise.per, noise.clamp) == ("uniform", 0.0, "position", True)
    assert noise.sigma_max == pytest.approx(record["matched_noise_sigma_max"], abs=5e-4)
    assert f"{record['target_pixel_rms']:.3f}" in header(path)


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_compared_exact_rollout_rolls_out_at_least_a_quarter_of_its_inputs_and_says_how_many(folder):
    """A configuration called exact rollout must roll out (docs/method.md): a one-token window is another method."""
    path = ROOT / "experiments" / folder / "exact-rollout.toml"
    cfg = load_config(path)
    tokens = (cfg.data.image_size // cfg.model.patch_size) ** 2
    share = cfg.model.rollout.rolled_share(tokens)
    assert share >= 0.25, f"{folder}: {share:.3f} of the inputs model-made"
    assert f"{share:.2f} (ExactRolloutConfig.rolled_share({tokens})" in header(path)


@pytest.mark.slow
@pytest.mark.parametrize("folder", FOLDERS)
def test_comparison_files_match_pra_in_size_and_sampling_cost_or_say_how_they_differ(folder):
    """Within 3% of pra's parameters, and at its head evaluations per token or the header says otherwise."""
    from prakit.summary import si, summarize

    def facts(name):
        summary = summarize(load_config(ROOT / "experiments" / folder / f"{name}.toml"))
        flops = summary["flops"]
        return summary["parameters"]["total"], flops["head_evaluations_per_token"], flops["sample_per_image"]

    params, evaluations, sampling = facts("pra")
    for name in files(folder):
        own_header = header(ROOT / "experiments" / folder / f"{name}.toml")
        own_params, own_evaluations, own_sampling = facts(name)
        assert abs(own_params / params - 1) <= 0.03, f"{name}: {si(own_params)} parameters against pra's {si(params)}"
        if own_evaluations != evaluations:
            assert f"{own_evaluations} head evaluations per token against DDIM's {evaluations}" in own_header, name
            assert f"{si(own_sampling)} sampling FLOPs per image against {si(sampling)}" in own_header, name


SMALL = [
    "data.image_size=8",
    "model.backbone.width=64", "model.backbone.depth=2", "model.backbone.heads=2",
    "model.generator.width=64", "model.generator.depth=2",
]
STEPS, FACTOR = 300, 0.3


@pytest.mark.slow
@pytest.mark.parametrize("name", files("imagenet256/comparison"))
def test_every_baseline_overfits_a_tiny_fixed_batch(name):
    """Mean loss over the last 20 of 300 steps is below 0.3x that of the first 20."""
    path = ROOT / "experiments" / "digits" / f"{name}.toml"
    overrides = SMALL + (["model.decoder.width=64"] if documented_components()[name][0] == "mlp" else [])
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


def sign_coherence(rollout, steps=400, batch=32) -> float:
    """Train a tiny model on images of 4 tokens that are all +0.5 or all -0.5 (one class); return
    the share of its samples whose 4 tokens keep one sign (chance: 1/8). Only a model that reads
    its context keeps the sign its first token chose."""
    torch.manual_seed(0)
    cfg = load_config(ROOT / "experiments" / "quickstart.toml", [
        "model.patch_size=2", "data.image_size=4", "data.channels=1", "data.num_classes=1",
        "model.preset=micro", "model.generator.sample_steps=5",
    ])
    model = ARModel.from_config(attrs.evolve(cfg, model=attrs.evolve(cfg.model, rollout=rollout)))
    model.sampling = attrs.evolve(model.sampling, cfg_scale=1.0, steps=None)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    labels = torch.zeros(batch, dtype=torch.long)
    for step in range(steps):
        signs = torch.randint(0, 2, (batch, 1, 1, 1)).float() * 2 - 1
        loss = model.loss(0.5 * signs.expand(batch, 1, 4, 4), labels, step).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tokens = model.eval().sample_tokens(torch.zeros(400, dtype=torch.long), model.sampling)
    signs = torch.sign(tokens.mean(-1))
    return (signs == signs[:, :1]).all(1).float().mean().item()


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread (two fight over the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_exact_rollout_keeps_the_coherence_teacher_forcing_reaches(one_thread):
    rollouts = registry.get("rollout")
    teacher_forcing = sign_coherence(rollouts.config("teacher_forcing"))
    exact = sign_coherence(rollouts.config("exact_rollout"))
    free_running = sign_coherence(rollouts.config("exact_rollout", window=3, min_prefix=0))
    assert teacher_forcing > 0.85
    assert exact > teacher_forcing - 0.05
    assert free_running < teacher_forcing - 0.1  # whole rollouts against the true targets: the context stops mattering
