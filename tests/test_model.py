"""The composed AR model: the training loss, the stop-gradients, rollouts and sampling."""

from pathlib import Path

import attrs
import pytest
import torch
from helpers import batch, rollout_inputs, small_model

from prakit import registry
from prakit.config import SampleConfig, load_config, preset_model
from prakit.model import ARModel
from prakit.random import sample_generators

ROOT = Path(__file__).resolve().parents[1]






def test_patchify_is_raster_order_and_inverted_by_unpatchify():
    model = small_model()
    images, _ = batch()
    tokens = model.patchify(images)
    assert tokens.shape == (4, 4, 48)
    # token 1 is the top-right 4x4 patch, laid out (row, column, channel)
    torch.testing.assert_close(tokens[:, 1], images[:, :, :4, 4:].permute(0, 2, 3, 1).reshape(4, 48))
    torch.testing.assert_close(model.unpatchify(tokens), images)


def test_loss_terms_and_their_sum():
    model = small_model(rec_weight=0.5)
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
    model = small_model(rollout="pra")
    losses = model.loss(*batch())
    assert set(grads_of(model, losses.head)) == {"backbone", "generator"}  # the stop-gradients hold
    losses = model.loss(*batch())
    assert set(grads_of(model, losses.reconstruction)) == {"decoder"}


def test_head_grad_to_encoder_lets_the_head_loss_reach_the_encoder_only():
    model = small_model(rollout="pra", head_grad_to_encoder=True)
    touched = grads_of(model, model.loss(*batch()).head)
    assert set(touched) == {"backbone", "generator", "decoder"}
    assert all(name.startswith("decoder.encoder") for name in touched["decoder"])




def test_teacher_forcing_inputs_are_the_ground_truth():
    model = small_model()
    images, labels = batch()
    torch.testing.assert_close(rollout_inputs(model, images, labels), model.patchify(images))


def test_pra_builds_each_position_independently():
    model = small_model(rollout="pra")
    images, labels = batch()
    changed = model.unpatchify(model.patchify(images).index_fill(1, torch.tensor([2]), 0.3))
    a = rollout_inputs(model, images, labels, seed=5)
    b = rollout_inputs(model, changed, labels, seed=5)
    others = [0, 1, 3]
    torch.testing.assert_close(a[:, others], b[:, others])
    assert not torch.allclose(a[:, 2], b[:, 2])
    assert not torch.allclose(a, model.patchify(images))  # the inputs are perturbed


def test_calibrated_pra_waits_for_its_warm_up_and_keeps_sigma_within_its_range():
    cfg = registry.get("rollout").config("pra", sigma="calibrated", calib_warmup=5, calib_every=1, calib_tokens=8,
                                         sigma_min=0.1, sigma_max=0.3)
    model = small_model(rollout=cfg)
    images, labels = batch()
    z = model.decoder.encode(model.patchify(images))
    rollout_inputs(model, images, labels, step=4)
    assert torch.isnan(model.rollout.measured_sigma)  # an untrained head's error says nothing yet
    rollout_inputs(model, images, labels, step=5)
    assert model.rollout.measured_sigma > 0.3  # the head is far off at first...
    assert torch.all(model.rollout.sigma(z) == 0.3)  # ...but sigma stays within [sigma_min, sigma_max]
    model.rollout.measured_sigma.fill_(0.01)
    assert torch.all(model.rollout.sigma(z) == 0.1)


def test_calibrated_pra_measures_the_heads_rms_error_on_teacher_forced_tokens():
    cfg = registry.get("rollout").config("pra", sigma="calibrated", calib_warmup=0, calib_tokens=16, calib_steps=3,
                                         sigma_max=100.0)
    model = small_model(rollout=cfg)
    images, labels = batch()
    x = model.patchify(images)
    z = model.decoder.encode(x)
    torch.manual_seed(0)
    model.rollout.calibrate(x, z, labels, model)
    torch.manual_seed(0)
    h = model.backbone(x[:, :-1], labels).flatten(0, 1)
    pick = torch.randperm(h.shape[0])[:16]
    error = (model.generator.sample(h[pick], steps=3) - z.flatten(0, 1)[pick]).square().mean().sqrt()
    torch.testing.assert_close(model.rollout.measured_sigma, error)
    torch.testing.assert_close(model.rollout.sigma(z), error.expand(4, 4, 1))


def test_selfsample_reads_the_models_own_token_drawn_from_the_true_prefix_at_every_position():
    cfg = registry.get("rollout").config("pra_selfsample", steps=3, temperature=0.8)
    model = small_model(rollout=cfg)
    images, labels = batch()
    x = model.patchify(images)
    inputs = rollout_inputs(model, images, labels, seed=2)
    torch.manual_seed(2)
    with torch.no_grad():
        h = model.backbone(x[:, :-1], labels)
        own = model.states_to_tokens(model.generator.sample(h, steps=3, temperature=0.8))
    torch.testing.assert_close(inputs, own)
    changed = model.unpatchify(x.index_fill(1, torch.tensor([1]), 0.3))
    moved = rollout_inputs(model, changed, labels, seed=2)
    torch.testing.assert_close(moved[:, :2], inputs[:, :2])  # position i reads only the true tokens before it
    assert not torch.allclose(moved[:, 2:], inputs[:, 2:])


def test_projected_states_are_renormalised_after_guidance_before_they_are_decoded():
    decoder = registry.get("decoder").config("mlp", state_dim=4, width=16, depth=1, project_state=True)
    model = small_model(decoder="mlp").eval()
    model.decoder = registry.build(decoder, token_dim=model.token_dim, patch_size=4, channels=3)
    generated, decoded = [], []
    generate, decode = model.generator.sample, model.decoder.decode
    model.generator.sample = lambda *args, **kwargs: generated.append(generate(*args, **kwargs)) or generated[-1]
    model.decoder.decode = lambda z: decoded.append(z) or decode(z)
    sample(model, torch.tensor([0, 1]), [0, 1], cfg_scale=2.0)
    states = torch.cat(generated)
    torch.testing.assert_close(torch.cat(decoded), torch.nn.functional.layer_norm(states, (4,)))
    assert not torch.allclose(torch.cat(decoded), states)
    with pytest.raises(ValueError, match="normalize_state"):
        registry.get("decoder").config("mlp", normalize_state=False, project_state=True)


def exact_rollout(image_size=16, **fields):
    """A 16-token model that rolls out with ``fields``, its head replaced by a fixed function of
    ``h`` (the rollout's wiring is under test, not the head), and the head's calls."""
    model = small_model(rollout=registry.get("rollout").config("exact_rollout", **fields), image_size=image_size)
    calls = []
    weight = torch.randn(model.backbone.width, model.generator.state_dim, generator=torch.Generator().manual_seed(5))

    def sample(h, **kwargs):
        calls.append(kwargs)
        return torch.tanh(h.float() @ weight)

    model.generator.sample = sample
    return model, calls


def rolled_positions(model, inputs, x):
    """(B, L): where the rollout's inputs are not the ground truth."""
    return (inputs - x).abs().amax(-1) > 0


def test_exact_rollout_draws_each_rolled_token_from_the_rolled_prefix_to_the_end():
    model, _ = exact_rollout(window="rest")
    images, labels = batch(n=6, size=16)
    x = model.patchify(images)
    inputs = rollout_inputs(model, images, labels, seed=3)
    own = rolled_positions(model, inputs, x)
    starts = [int(row.nonzero()[0]) for row in own]
    assert len(set(starts)) > 1  # each row draws its own prefix length
    for r, start in enumerate(starts):
        assert start >= 1 and own[r, start:15].all() and not own[r, 15]  # to the end; the last token is never read
        for i in range(start, 15):
            with torch.no_grad():
                h_rolled, h_true = (model.backbone(seq[r : r + 1, :i], labels[r : r + 1])[0, -1] for seq in (inputs, x))
            token = lambda h: model.states_to_tokens(model.generator.sample(h))  # noqa: E731
            torch.testing.assert_close(inputs[r, i], token(h_rolled), atol=1e-5, rtol=1e-5)
            if i > start:  # errors accumulate: not what the true prefix would give
                assert not torch.allclose(inputs[r, i], token(h_true), atol=1e-3)
    assert model.training  # sampled in eval mode, handed back in training mode


def test_exact_rollout_with_aligned_starts_rolls_a_window_then_reads_the_ground_truth():
    model, calls = exact_rollout(window=3, starts="aligned", fraction=0.5, head_steps=2)
    images, labels = batch(n=4, size=16)
    x = model.patchify(images)
    own = rolled_positions(model, rollout_inputs(model, images, labels, seed=4), x)
    assert not own[2:].any()  # rows past the fraction
    start = int(own[0].nonzero()[0])
    window = torch.zeros(16, dtype=torch.bool)
    window[start : min(start + 3, 15)] = True
    assert (own[:2] == window).all()
    assert {c["steps"] for c in calls} == {2}

def test_exact_rollout_with_probability_zero_reads_the_ground_truth():
    model, calls = exact_rollout(probability=0.0)
    images, labels = batch(n=4, size=16)
    torch.testing.assert_close(rollout_inputs(model, images, labels), model.patchify(images))
    assert not calls and model.rollout.measurements()["rolled_share"] == 0.0


def test_exact_rollout_draws_as_inference_draws():
    model, calls = exact_rollout(image_size=8)
    model.sampling = SampleConfig(cfg_scale=2.0, temperature=0.9, steps=3)
    rollout_inputs(model, *batch())
    assert calls and all(c["cfg_scale"] != 1.0 and c["steps"] == 3 and c["temperature"] == 0.9 for c in calls)


def test_exact_rollout_measures_the_share_of_inputs_it_rolls_as_its_config_expects():
    model, _ = exact_rollout(window="rest", fraction=0.5)
    images, labels = batch(n=8, size=16)
    shares = []
    for seed in range(40):
        rollout_inputs(model, images, labels, seed=seed)
        shares.append(model.rollout.measurements()["rolled_share"])
    expected = model.rollout.cfg.rolled_share(16)
    assert expected == pytest.approx(0.25)  # half the rows, half of their 15 inputs on average
    assert sum(shares) / len(shares) == pytest.approx(expected, abs=0.04)


def test_sampling_after_per_row_prefixes_equals_reading_the_whole_sequence_again():
    model = small_model(image_size=16).eval()
    images, labels = batch(n=3, size=16)
    prefix, lengths = model.patchify(images), torch.tensor([2, 7, 5])
    cached, uncached = (sample(model, labels, range(3), cached=c, cfg_scale=2.0, prefix=prefix, prefix_lengths=lengths)
                        for c in (True, False))
    torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=1e-5)
    for r, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(cached[r, :n], prefix[r, :n])
        assert not torch.allclose(cached[r, n], prefix[r, n])


def sample(model, labels, indices, cached=True, prefix=None, prefix_lengths=None, **options):
    return model.sample_tokens(labels, SampleConfig(**options), rng=sample_generators(0, indices), cached=cached,
                               prefix=prefix, prefix_lengths=prefix_lengths)


@pytest.mark.parametrize("generator", ["diffusion", "flow"])
def test_sampling_does_not_depend_on_the_batching(generator):
    model = small_model(generator=generator).eval()
    labels = torch.arange(8) % 3
    whole = sample(model, labels, range(8), cfg_scale=2.0)
    parts = [sample(model, labels[i : i + 3], range(i, min(i + 3, 8)), cfg_scale=2.0) for i in (0, 3, 6)]
    torch.testing.assert_close(whole, torch.cat(parts), atol=1e-5, rtol=1e-5)


def test_kv_cached_sampling_equals_full_recomputation():
    model = small_model().eval()
    labels = torch.tensor([0, 2])
    cached = sample(model, labels, [0, 1])
    gens = sample_generators(0, [0, 1])
    tokens = torch.zeros(2, 0, model.token_dim)
    with torch.no_grad():
        for _ in range(model.seq_len):
            h = model.backbone(tokens, labels)[:, -1]
            z = model.generator.sample(h, rng=gens)
            tokens = torch.cat([tokens, model.states_to_tokens(z)[:, None]], 1)
    torch.testing.assert_close(cached, tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sample(model, labels, [0, 1], cached=False), tokens, atol=1e-5, rtol=1e-5)


def test_uncached_sampling_reads_the_whole_sequence_again_and_draws_the_same_tokens():
    model = small_model().eval()
    labels = torch.tensor([0, 2])
    prefix = model.patchify(batch()[0][:2])[:, :1]
    options = SampleConfig(cfg_scale=2.0, steps=3)
    cached = model.sample_tokens(labels, options, rng=sample_generators(0, [0, 1]), prefix=prefix)
    model.backbone.step = None  # the cache is never used
    lengths = []
    forward = model.backbone.forward
    model.backbone.forward = lambda tokens, rows: lengths.append(tokens.shape[1]) or forward(tokens, rows)
    uncached = model.sample_tokens(labels, options, rng=sample_generators(0, [0, 1]), prefix=prefix, cached=False)
    assert lengths == list(range(1, model.seq_len))
    torch.testing.assert_close(uncached, cached, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("decoder, generator", [
    ("identity", registry.get("generator").config("flow", prediction="v", width=32, depth=2, sample_steps=4)),
    ("mlp", "diffusion"),
])
def test_generated_tokens_are_clamped_to_the_pixel_range_before_they_are_fed_back(decoder, generator):
    model = small_model(decoder=decoder, generator=generator).eval()
    read = []
    step = model.backbone.step
    model.backbone.step = lambda token, cache: read.append(token) or step(token, cache)
    decoded = []
    decode = model.decoder.decode
    model.decoder.decode = lambda z: decoded.append(decode(z)) or decoded[-1]
    tokens = sample(model, torch.tensor([0, 1, 2]), [0, 1, 2], cfg_scale=3.0)
    assert max(d.abs().max() for d in decoded) > 1  # the decoder overshoots...
    assert tokens.abs().max() <= 1 and max(t.abs().max() for t in read) <= 1  # ...what is fed back does not


def test_the_head_clips_to_the_range_the_decoder_declares():
    assert small_model(decoder="identity").generator.clip == 1.0  # pixels
    assert small_model(decoder="mlp").generator.clip == pytest.approx(3**0.5)  # a LayerNorm'd 4-dim state: sqrt(4 - 1)


def test_guidance_starts_at_one_on_a_linear_schedule_and_scale_one_is_unguided():
    model = small_model().eval()
    labels = torch.tensor([0, 1])
    plain = sample(model, labels, [0, 1])
    linear = sample(model, labels, [0, 1], cfg_scale=4.0)
    constant = sample(model, labels, [0, 1], cfg_scale=4.0, cfg_schedule="constant")
    torch.testing.assert_close(linear[:, 0], plain[:, 0], atol=1e-5, rtol=1e-5)  # scale 1 at position 0
    assert not torch.allclose(constant[:, 0], plain[:, 0])
    assert not torch.allclose(linear[:, 1:], plain[:, 1:])


def test_sample_returns_uint8_images():
    model = small_model().eval()
    images = model.sample(torch.tensor([0, 1, 2]), rng=sample_generators(3, [0, 1, 2]))
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
        model = small_model()
    options = SampleConfig(cfg_scale=cfg_scale, steps=3)
    labels = torch.zeros(1, dtype=torch.long, device="meta")
    full = count_flops(lambda: model.sample_tokens(labels, options))
    assert full > 0
    assert sampling_flops(model, options, steps=3) == full


EXPERIMENTS = sorted((ROOT / "experiments").rglob("*.toml"))


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if "exact-rollout" in p.name else p
                                  for p in EXPERIMENTS], ids=lambda p: str(p.relative_to(ROOT / "experiments")))
def test_every_experiment_builds_with_the_right_shapes(path):  # exact rollout's loss samples tokens: slow
    """On the meta device: no memory is allocated, even for PRA-L."""
    from prakit.summary import meta_model

    cfg = load_config(path)
    if cfg.model.rollout.name == "exact_rollout":  # roll out 1 token, not 4 (slow on meta)
        seq_len = (cfg.data.image_size // cfg.model.patch_size) ** 2
        cfg = load_config(path, [f"model.rollout.min_prefix={seq_len - 2}", "model.rollout.head_steps=1"])
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


def test_a_component_that_cannot_be_built_is_a_config_error_naming_it(monkeypatch):
    from prakit_baselines.identity import IdentityDecoder

    from prakit.errors import ConfigError

    def refuse(self, cfg, *, token_dim, **_):
        raise ValueError(f"token_dim {token_dim} is not a 16x16x3 patch")

    monkeypatch.setattr(IdentityDecoder, "__init__", refuse)
    with pytest.raises(ConfigError, match=r"model.decoder: 'identity' cannot be built with this config: token_dim 48"):
        small_model(decoder="identity")
    with pytest.raises(ConfigError, match=r"model.patch_size: 3 does not divide data.image_size 8"):
        ARModel(attrs.evolve(small_model().cfg, patch_size=3), image_size=8, channels=3, num_classes=3)


@pytest.mark.parametrize("rollout", ["teacher_forcing", "pra"])
def test_torch_compile_traces_the_training_loss(rollout):
    """``train.compile`` compiles the model's forward; dynamo must trace it to the losses it returns."""
    model = small_model(rollout)
    images, labels = batch()
    compiled = torch.compile(model, backend="eager")  # dynamo's tracing alone, no code generation
    losses = compiled(images, labels, 0)
    losses.total.backward()
    assert losses.total.isfinite() and losses.total == losses.head + model.cfg.rec_weight * losses.reconstruction
    assert all(p.grad is not None for p in model.backbone.parameters())


@pytest.mark.slow  # inductor writes and builds its kernels: about 15 s
def test_compiled_sampling_draws_what_eager_sampling_draws_with_one_graph_for_every_position():
    from torch._dynamo.utils import counters

    model = small_model(backbone=attrs.evolve(preset_model("micro").backbone, positions="rope2d")).eval()
    labels = torch.arange(5) % 3
    eager = sample(model, labels, range(5), cfg_scale=2.0, steps=3)
    torch._dynamo.reset()
    counters.clear()
    model.compile_sampling("default")
    torch.testing.assert_close(sample(model, labels, range(5), cfg_scale=2.0, steps=3), eager, atol=1e-5, rtol=1e-5)
    assert counters["stats"]["unique_graphs"] == 2  # the decoding step and the head's network, at every position
    sample(model, labels, range(5, 10), cfg_scale=2.0, steps=3)  # a fresh cache: the same two graphs
    assert counters["stats"]["unique_graphs"] == 2


def test_a_component_that_cannot_compile_its_sampling_says_so(toy_plugin):
    from prakit.errors import PrakitError

    toy_backbone = small_model(backbone=registry.get("backbone").config("toy"))
    with pytest.raises(PrakitError, match='StandInBackbone does not compile its decoding; set sample.compile = "off"'):
        toy_backbone.compile_sampling("default")
    toy_backbone.compile_sampling("off")  # eager: nothing to compile


def test_compiling_on_a_cpu_without_a_cxx_compiler_is_a_one_line_error(monkeypatch):
    from prakit.errors import PrakitError

    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(PrakitError, match=r"the compiler 'g\+\+' is not on the PATH: install it \(or name one in"):
        small_model().compile_sampling("default")
