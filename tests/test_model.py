"""The composed AR model: the training loss, the stop-gradients, rollouts and sampling."""

from pathlib import Path

import pytest
import torch

from prakit import registry
from prakit.config import ModelConfig, SampleConfig, load_config
from prakit.model import ARModel
from prakit.random import sample_generators
from prakit.testing import perturb_parameters

ROOT = Path(__file__).resolve().parents[1]


def tiny(rollout="teacher_forcing", decoder="mlp", generator="diffusion", **model_fields) -> ARModel:
    """A 2x2-token model of 4x4x3 patches (token_dim 48)."""
    def component(kind, name, **fields):
        return registry.get(kind).config(name, **fields)

    decoders = {"mlp": {"state_dim": 4, "width": 16, "depth": 1}, "identity": {}}
    cfg = ModelConfig(
        backbone=component("backbone", "transformer", width=32, depth=2, heads=2),
        generator=component("generator", generator, width=32, depth=2, sample_steps=4),
        decoder=component("decoder", decoder, **decoders[decoder]),
        rollout=component("rollout", rollout) if isinstance(rollout, str) else rollout,
        patch_size=4,
        **model_fields,
    )
    torch.manual_seed(0)
    model = ARModel(cfg, image_size=8, channels=3, num_classes=3)
    perturb_parameters(model)  # as if trained a little: zero-initialised head layers move
    return model


def batch(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g) * 2 - 1, torch.arange(n) % 3


def test_patchify_is_raster_order_and_inverted_by_unpatchify():
    model = tiny()
    images, _ = batch()
    tokens = model.patchify(images)
    assert tokens.shape == (4, 4, 48)
    # token 1 is the top-right 4x4 patch, laid out (row, column, channel)
    torch.testing.assert_close(tokens[:, 1], images[:, :, :4, 4:].permute(0, 2, 3, 1).reshape(4, 48))
    torch.testing.assert_close(model.unpatchify(tokens), images)


def test_loss_terms_and_their_sum():
    model = tiny(rec_weight=0.5)
    losses = model.loss(*batch())
    assert losses.total.shape == () and torch.isfinite(losses.total)
    torch.testing.assert_close(losses.total, losses.head + 0.5 * losses.reconstruction)


def grads_of(model, loss) -> dict[str, set[str]]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    touched = {}
    for name, p in model.named_parameters():
        if p.grad is not None and torch.any(p.grad != 0):
            touched.setdefault(name.split(".")[0], set()).add(name)
    return touched


def test_head_loss_trains_backbone_and_head_only_under_pra():
    model = tiny(rollout="pra")
    losses = model.loss(*batch())
    assert set(grads_of(model, losses.head)) == {"backbone", "generator"}  # the stop-gradients hold
    losses = model.loss(*batch())
    assert set(grads_of(model, losses.reconstruction)) == {"decoder"}


def test_head_grad_to_encoder_lets_the_head_loss_reach_the_encoder_only():
    model = tiny(rollout="pra", head_grad_to_encoder=True)
    touched = grads_of(model, model.loss(*batch()).head)
    assert set(touched) == {"backbone", "generator", "decoder"}
    assert all(name.startswith("decoder.encoder") for name in touched["decoder"])


def rollout_inputs(model, images, labels, seed=0, step=0):
    torch.manual_seed(seed)
    x = model.patchify(images)
    return model.rollout(x, model.decoder.encode(x), labels, model=model, step=step)


def test_teacher_forcing_inputs_are_the_ground_truth():
    model = tiny()
    images, labels = batch()
    torch.testing.assert_close(rollout_inputs(model, images, labels), model.patchify(images))


def test_pra_builds_each_position_independently():
    model = tiny(rollout="pra")
    images, labels = batch()
    changed = model.unpatchify(model.patchify(images).index_fill(1, torch.tensor([2]), 0.3))
    a = rollout_inputs(model, images, labels, seed=5)
    b = rollout_inputs(model, changed, labels, seed=5)
    others = [0, 1, 3]
    torch.testing.assert_close(a[:, others], b[:, others])
    assert not torch.allclose(a[:, 2], b[:, 2])
    assert not torch.allclose(a, model.patchify(images))  # the inputs are perturbed


def test_exact_rollout_inputs_are_the_models_own_samples():
    cfg = registry.get("rollout").config("exact_rollout", head_steps=3)
    model = tiny(rollout=cfg)
    images, labels = batch()
    inputs = rollout_inputs(model, images, labels, seed=7)
    torch.manual_seed(7)
    torch.rand(())  # the rollout's draw for its per-step probability
    own = model.sample_tokens(labels, SampleConfig(steps=3))
    torch.testing.assert_close(inputs, own)


def test_exact_rollout_cost_controls_keep_the_rest_teacher_forced():
    cfg = registry.get("rollout").config("exact_rollout", fraction=0.5, prefix=1, head_steps=2)
    model = tiny(rollout=cfg)
    images, labels = batch()
    inputs, x = rollout_inputs(model, images, labels), model.patchify(images)
    torch.testing.assert_close(inputs[2:], x[2:])  # rows past the fraction
    torch.testing.assert_close(inputs[:2, :1], x[:2, :1])  # the ground-truth prefix
    assert not torch.allclose(inputs[:2, 1:], x[:2, 1:])
    never = registry.get("rollout").config("exact_rollout", probability=0.0)
    torch.testing.assert_close(rollout_inputs(tiny(rollout=never), images, labels), x)


def sample(model, labels, indices, **options):
    return model.sample_tokens(labels, SampleConfig(**options), generator=sample_generators(0, indices))


@pytest.mark.parametrize("generator", ["diffusion", "flow"])
def test_sampling_does_not_depend_on_the_batching(generator):
    model = tiny(generator=generator).eval()
    labels = torch.arange(8) % 3
    whole = sample(model, labels, range(8), cfg_scale=2.0)
    parts = [sample(model, labels[i : i + 3], range(i, min(i + 3, 8)), cfg_scale=2.0) for i in (0, 3, 6)]
    torch.testing.assert_close(whole, torch.cat(parts), atol=1e-5, rtol=1e-5)


def test_kv_cached_sampling_equals_full_recomputation():
    model = tiny().eval()
    labels = torch.tensor([0, 2])
    cached = sample(model, labels, [0, 1])
    gens = sample_generators(0, [0, 1])
    tokens = torch.zeros(2, 0, model.token_dim)
    with torch.no_grad():
        for _ in range(model.seq_len):
            h = model.backbone(tokens, labels)[:, -1]
            z = model.generator.sample(h, generator=gens)
            tokens = torch.cat([tokens, model.decoder.decode(z)[:, None]], 1)
    torch.testing.assert_close(cached, tokens, atol=1e-5, rtol=1e-5)


def test_guidance_starts_at_one_on_a_linear_schedule_and_scale_one_is_unguided():
    model = tiny().eval()
    labels = torch.tensor([0, 1])
    plain = sample(model, labels, [0, 1])
    linear = sample(model, labels, [0, 1], cfg_scale=4.0)
    constant = sample(model, labels, [0, 1], cfg_scale=4.0, cfg_schedule="constant")
    torch.testing.assert_close(linear[:, 0], plain[:, 0], atol=1e-5, rtol=1e-5)  # scale 1 at position 0
    assert not torch.allclose(constant[:, 0], plain[:, 0])
    assert not torch.allclose(linear[:, 1:], plain[:, 1:])


def test_sample_returns_uint8_images():
    model = tiny().eval()
    images = model.sample(torch.tensor([0, 1, 2]), generator=sample_generators(3, [0, 1, 2]))
    assert images.shape == (3, 8, 8, 3) and images.dtype == torch.uint8


@pytest.mark.parametrize("preset, target", [("pra-S", 135e6), ("pra-B", 250e6), ("pra-L", 511e6)])
def test_preset_parameter_counts_are_within_three_percent(preset, target):
    from prakit.summary import summarize

    cfg = load_config(ROOT / "experiments" / "imagenet256" / f"{preset}.toml")
    total = summarize(cfg, flops=False)["parameters"]["total"]
    assert abs(total / target - 1) < 0.03, f"{preset}: {total / 1e6:.1f}M parameters"


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_composed_sampling_flops_equal_a_full_count(cfg_scale):
    from prakit.summary import count_flops, sampling_flops

    with torch.device("meta"):
        model = tiny()
    options = SampleConfig(cfg_scale=cfg_scale, steps=3)
    labels = torch.zeros(1, dtype=torch.long, device="meta")
    full = count_flops(lambda: model.sample_tokens(labels, options))
    assert full > 0
    assert sampling_flops(model, options, steps=3) == full


EXPERIMENTS = sorted((ROOT / "experiments").rglob("*.toml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(ROOT / "experiments")))
def test_every_experiment_builds_with_the_right_shapes(path):
    """On the meta device: no memory is allocated, even for PRA-L."""
    from prakit.summary import meta_model

    cfg = load_config(path)
    if cfg.model.rollout.name == "exact_rollout":  # roll out 2 tokens, not 256 (slow on meta)
        seq_len = (cfg.data.image_size // cfg.model.patch_size) ** 2
        cfg = load_config(path, [f"model.rollout.prefix={seq_len - 2}", "model.rollout.head_steps=1"])
    model = meta_model(cfg)
    size, channels = cfg.data.image_size, cfg.data.channels
    images = torch.zeros(2, channels, size, size, device="meta")
    labels = torch.zeros(2, dtype=torch.long, device="meta")
    losses = model.loss(images, labels)
    assert losses.total.shape == () and losses.total.dtype == torch.float32
    x = model.patchify(images)
    assert x.shape == (2, model.seq_len, channels * cfg.model.patch_size**2)
    h = model.backbone(x[:, :-1], labels)
    assert h.shape == (2, model.seq_len, model.backbone.width) and h.dtype == torch.float32
    z = model.generator.sample(h[:, :1], steps=1)
    assert z.shape == (2, 1, model.decoder.state_dim)
    assert model.decoder.decode(z).shape == (2, 1, model.token_dim)
