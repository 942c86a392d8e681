"""The built-in transformer backbone and the diffusion and flow heads beyond their contracts (see
test_builtin_contracts.py): limits, 2D RoPE, the heads' maths with exact networks, guidance,
meta-device sampling, and fitting a batch."""

import sys

import attrs
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from prakit import registry
from prakit.testing import perturb_parameters

TOKEN_DIM, GRID, NUM_CLASSES = 12, (3, 3), 10
SEQ_LEN = GRID[0] * GRID[1]
STATE_DIM, COND_DIM, STATE_BOUND = 4, 16, 3.0
HEADS = [  # (name, config fields) of each head variant
    ("diffusion", {"prediction": "eps"}),
    ("diffusion", {"prediction": "v"}),
    ("diffusion", {"prediction": "eps", "sampler": "ddpm"}),
    ("flow", {"prediction": "x", "sampler": "heun", "last_step": "clean"}),  # exact at any step count
    ("flow", {"prediction": "x", "sampler": "euler", "last_step": "clean"}),
    ("flow", {"prediction": "v", "sampler": "heun"}),
]
HEAD_IDS = [f"{name}-{'-'.join(fields.values())}" for name, fields in HEADS]


def build_backbone(grid=GRID, seq_len=SEQ_LEN, **fields):
    cfg = registry.get("backbone").config("transformer", width=32, depth=2, heads=2, **fields)
    return registry.get("backbone").build(
        cfg, token_dim=TOKEN_DIM, seq_len=seq_len, num_classes=NUM_CLASSES, grid=grid
    )


def build_head(name="diffusion", **fields):
    cfg = registry.get("generator").config(name, **{"width": 32, "depth": 2, **fields})
    return registry.get("generator").build(cfg, state_dim=STATE_DIM, cond_dim=COND_DIM, state_bound=STATE_BOUND)


def tokens_and_labels(batch=3, length=SEQ_LEN - 1):
    return torch.randn(batch, length, TOKEN_DIM), torch.tensor([0, 4, NUM_CLASSES])[:batch]


def exact_network(head):
    """A stand-in for ``head.net`` whose clean-state prediction is ``h[:, :STATE_DIM]``, exactly."""

    def forward(x_t, t, h):
        target = h[:, :STATE_DIM]
        if head.cfg.name == "flow":  # t is 1000 * flow time
            return target if head.cfg.prediction == "x" else (target - x_t) / (1 - t[:, None] / 1000)
        a, b = head.alpha_bar[t, None].sqrt(), (1 - head.alpha_bar[t, None]).sqrt()
        eps = (x_t - a * target) / b
        return eps if head.cfg.prediction == "eps" else a * eps - b * target

    return forward


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def test_registered_by_the_models_plugin():
    for kind, name, start in [
        ("backbone", "transformer", "Pre-norm"),
        ("generator", "diffusion", "MAR-style"),
        ("generator", "flow", "Rectified-flow"),
    ]:
        entry = registry.get(kind).entry(name)
        assert entry.plugin == "models"
        assert entry.description.startswith(start)


@pytest.mark.parametrize(
    "kind, name, fields",
    [
        ("backbone", "transformer", {"width": 30, "heads": 4}),
        ("backbone", "transformer", {"positions": "rope"}),
        ("backbone", "transformer", {"positions": "rope2d", "width": 24, "heads": 4}),  # head_dim 6
        ("backbone", "transformer", {"rope_theta": 1.0}),
        ("generator", "diffusion", {"prediction": "x"}),
        ("generator", "flow", {"prediction": "eps"}),
        ("generator", "flow", {"sampler": "rk4"}),
        ("generator", "flow", {"t_eps": 0.0}),
        ("generator", "flow", {"t_std": 0.0}),
        ("generator", "flow", {"noise_scale": 0.0}),
        ("generator", "flow", {"guidance_interval": (0.5, 0.2)}),
        ("generator", "flow", {"guidance_interval": (0.0, 1.5)}),
        ("generator", "flow", {"last_step": "heun"}),
    ],
)
def test_config_validation(kind, name, fields):
    with pytest.raises(ValueError):
        registry.get(kind).config(name, **fields)


def test_backbone_checks_the_grid():
    with pytest.raises(ValueError, match="grid"):
        build_backbone(grid=(2, 4))


def test_backbone_rejects_too_many_tokens():
    with pytest.raises(ValueError, match="seq_len"):
        build_backbone()(*tokens_and_labels(length=SEQ_LEN))


def test_kv_cache_refuses_a_token_past_the_sequence():
    model = build_backbone()
    tokens, labels = tokens_and_labels()
    with torch.no_grad():
        _, cache = model.start(labels)
        for i in range(SEQ_LEN - 1):
            model.step(tokens[:, i], cache)
    assert cache.pos == SEQ_LEN
    with pytest.raises(ValueError, match="full"):
        model.step(tokens[:, 0], cache)


def test_the_kv_cache_is_written_in_place_and_masks_the_positions_not_yet_filled():
    from prakit_models.transformer import KVCache

    cache = KVCache(seq_len=5, device=torch.device("cpu"))
    for pos in range(3):
        k, v = torch.full((2, 1, 4, 8), float(pos + 1)), torch.full((2, 1, 4, 8), -float(pos + 1))
        keys, values = cache.update(0, k, v)
        mask = cache.filled()
        cache.advance()
    assert keys.shape == values.shape == (2, 4, 5, 8)  # (batch, heads, seq_len, head_dim): the same every step
    assert keys.data_ptr() == cache.keys[0].data_ptr()  # the preallocated cache itself, not a copy
    assert keys[:, :, :, 0].tolist() == [[[1.0, 2.0, 3.0, 0.0, 0.0]] * 4] * 2 and values[0, 0, 2, 0] == -3.0
    assert mask.tolist() == [[[[True, True, True, False, False]]]] and cache.pos == 3 and cache.position.item() == 3


def test_prakit_attention_picks_the_kernel_and_names_a_bad_choice(monkeypatch):
    from prakit_models.transformer import ATTENTION_KERNEL, xformers_causal_attention

    from prakit.errors import PrakitError

    monkeypatch.setitem(sys.modules, "xformers", None)  # xformers does not import
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for choice in ("auto", "sdpa"):
        monkeypatch.setenv(ATTENTION_KERNEL, choice)
        assert xformers_causal_attention() is None  # SDPA
    monkeypatch.setenv(ATTENTION_KERNEL, "xformers")
    with pytest.raises(PrakitError, match="PRAKIT_ATTENTION=xformers, but xformers does not import"):
        xformers_causal_attention()
    monkeypatch.setenv(ATTENTION_KERNEL, "flash")
    with pytest.raises(PrakitError, match="PRAKIT_ATTENTION='flash': set it to auto, sdpa or xformers"):
        build_backbone()


def test_rope2d_replaces_the_learned_positions():
    names = {name for name, _ in build_backbone(positions="rope2d").named_parameters()}
    assert "pos_embed" not in names and "pos_embed" in {n for n, _ in build_backbone().named_parameters()}


def test_rope2d_scores_depend_on_the_2d_offset_from_read_to_predicted_token():
    rows, cols = 3, 4
    rope = build_backbone(grid=(rows, cols), seq_len=rows * cols, positions="rope2d").rope
    q, k = torch.randn(2, 1, 1, 2, 16).expand(-1, -1, rows * cols, -1, -1)  # one q, one k everywhere
    q, k = rope(q, k, 0)
    scores = torch.einsum("shd,thd->hst", q[0], k[0])
    # Query s sits at the cell it predicts (s), key t at the cell it reads (t - 1; the start, -1).
    by_offset = {}
    for s in range(rows * cols):
        for t in range(rows * cols):
            offset = (s // cols - (t - 1) // cols, s % cols - (t - 1) % cols)
            by_offset.setdefault(offset, []).append(scores[:, s, t])
    for same in by_offset.values():
        torch.testing.assert_close(torch.stack(same), same[0].expand(len(same), -1))
    assert torch.stack([same[0] for same in by_offset.values()]).std(dim=0).min() > 0.01  # and vary with it


@pytest.mark.parametrize("steps", [10, 50])  # at 50 flow steps the last one has 1 - t < t_eps: see
# test_flow_last_euler_step_leaves_the_noise_an_x_prediction_clamped_at_t_eps_leaves
@pytest.mark.parametrize("name, fields", HEADS, ids=HEAD_IDS)
def test_exact_network_has_zero_loss_and_samples_its_target(name, fields, steps, monkeypatch):
    head = build_head(name, **fields)
    monkeypatch.setattr(head.net, "forward", exact_network(head))
    h = torch.randn(2, 3, COND_DIM).clamp(-2, 2)
    z = h[..., :STATE_DIM]
    assert head.loss(h, z).max() < 1e-6
    sample = head.sample(h, steps=steps, rng=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample, z, rtol=0, atol=1e-4)


@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("name, fields", HEADS, ids=HEAD_IDS)
def test_guidance_extrapolates_from_the_unconditional_target(name, fields, steps, monkeypatch):
    head = build_head(name, **fields)
    monkeypatch.setattr(head.net, "forward", exact_network(head))
    h, h_uncond = torch.rand(2, 6, COND_DIM) - 0.5
    sample = head.sample(h, steps=steps, cfg_scale=2.0, h_uncond=h_uncond)
    expected = h_uncond[:, :STATE_DIM] + 2.0 * (h[:, :STATE_DIM] - h_uncond[:, :STATE_DIM])
    torch.testing.assert_close(sample, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["diffusion", "flow"])
def test_samples_on_the_meta_device_so_flops_can_be_counted(name):
    head = build_head(name).to("meta")
    h = torch.empty(2, COND_DIM, device="meta")

    def flops(**kwargs):
        with FlopCounterMode(display=False) as counter:
            z = head.sample(h, steps=2, **kwargs)
        assert z.device.type == "meta" and z.shape == (2, STATE_DIM)
        return counter.get_total_flops()

    plain = flops()
    assert plain > 0 and flops(h_uncond=h, cfg_scale=3.0) == 2 * plain  # one batched pass per step


def test_diffusion_sample_clips_the_clean_estimate():
    # At init the head predicts eps = 0, so the clean estimate x_t / sqrt(alpha_bar) explodes.
    h = torch.randn(64, COND_DIM)
    clipped = build_head(clip_range=2.0).sample(h, steps=10, rng=torch.Generator().manual_seed(0))
    assert clipped.abs().max() <= 2.0
    unclipped = build_head(clip_x0=False).sample(h, steps=10, rng=torch.Generator().manual_seed(0))
    assert unclipped.abs().max() > 10.0


def standard_normal_oracle(head):
    """The exact eps of states drawn from N(0, 1): E[eps | x_t] = sqrt(1 - alpha_bar_t) x_t."""
    return lambda x_t, t, h: (1 - head.alpha_bar[t, None]).sqrt() * x_t


def test_ddpm_samples_the_data_distribution_and_temperature_scales_each_steps_noise(monkeypatch):
    h = torch.zeros(20_000, COND_DIM)

    def draw(sampler, temperature, steps):
        head = build_head(sampler=sampler, clip_x0=False)
        monkeypatch.setattr(head.net, "forward", standard_normal_oracle(head))
        return head.sample(h, steps=steps, temperature=temperature, rng=torch.Generator().manual_seed(0))

    # The posterior ("fixed small") variance leaves out the uncertainty of x0: a little narrow on
    # respaced steps, exact on all 1000.
    assert draw("ddpm", 1.0, 1000).std().item() == pytest.approx(1.0, abs=0.01)
    assert 0.93 < draw("ddpm", 1.0, 50).std().item() < 0.97
    assert draw("ddpm", 0.5, 50).std().item() < 0.8  # less noise per step, narrower samples
    # One step adds no noise: DDPM's temperature does not touch the starting noise, DDIM's scales it.
    torch.testing.assert_close(draw("ddpm", 0.5, 1), draw("ddpm", 1.0, 1))
    torch.testing.assert_close(draw("ddim", 0.5, 1), 0.5 * draw("ddim", 1.0, 1))


def test_flow_noise_scale_is_the_std_of_the_training_and_the_starting_noise():
    # A fresh v-prediction head predicts v = 0: its loss on z = 0 is the noise's mean square, and
    # its sample is the starting noise.
    h, z = torch.randn(256, COND_DIM), torch.zeros(256, STATE_DIM)

    def loss_and_sample(noise_scale):
        head = build_head("flow", prediction="v", noise_scale=noise_scale)
        torch.manual_seed(0)
        loss = head.loss(h, z).mean()
        return loss, head.sample(h, steps=3, temperature=0.5, rng=torch.Generator().manual_seed(0))

    (loss, sample), (loss2, sample2) = loss_and_sample(1.0), loss_and_sample(2.0)
    assert loss.item() == pytest.approx(1.0, abs=0.05)
    torch.testing.assert_close(loss2, 4 * loss)
    assert sample.std().item() == pytest.approx(0.5, abs=0.05)
    torch.testing.assert_close(sample2, 2 * sample)


def test_flow_guidance_acts_only_inside_the_guidance_interval():
    head = build_head("flow")
    perturb_parameters(head)
    h, h_uncond = torch.randn(2, 8, COND_DIM)

    def sample(interval, cfg_scale=3.0):
        head.cfg = attrs.evolve(head.cfg, guidance_interval=interval)
        return head.sample(h, steps=10, cfg_scale=cfg_scale, h_uncond=h_uncond, rng=torch.Generator().manual_seed(0))

    unguided = sample((0.0, 1.0), cfg_scale=1.0)
    torch.testing.assert_close(sample((0.95, 1.0)), unguided)  # every step has t <= 0.9
    assert not torch.allclose(sample((0.0, 1.0)), unguided)
    assert not torch.allclose(sample((0.5, 1.0)), unguided)
    # JiT's (0.1, 1): open at both ends, from t = 0 on when it starts at 0
    jit = attrs.evolve(head.cfg, guidance_interval=(0.1, 1.0))
    head.cfg = jit
    assert [head.guidance_scale(3.0, t) for t in (0.0, 0.1, 0.12, 0.98)] == [1.0, 1.0, 3.0, 3.0]
    head.cfg = attrs.evolve(jit, guidance_interval=(0.0, 0.5))
    assert [head.guidance_scale(3.0, t) for t in (0.0, 0.48, 0.5)] == [3.0, 3.0, 1.0]


def test_flow_last_euler_step_leaves_the_noise_an_x_prediction_clamped_at_t_eps_leaves():
    # With an exact x-prediction, z_t - z = (1 - t)(z_0 - z) while 1 - t >= t_eps; past that each
    # Euler step of dt keeps 1 - dt / t_eps of it. At 50 steps, t = 0.96 and 0.98 keep 0.6 each:
    # JiT's last Euler step ends at 0.04 * 0.6 * 0.6 = 0.0144 of the starting offset, "clean" at 0.
    def sample(last_step, steps):
        head = build_head("flow", sampler="euler", last_step=last_step)
        head.net.forward = exact_network(head)
        return head.sample(h, steps=steps, rng=torch.Generator().manual_seed(0))

    h = torch.randn(2, 3, COND_DIM).clamp(-2, 2)
    z, start = h[..., :STATE_DIM], torch.randn(2, 3, STATE_DIM, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample("clean", 50), z, rtol=0, atol=1e-5)
    torch.testing.assert_close(sample("euler", 50), z + 0.0144 * (start - z), rtol=0, atol=1e-5)
    torch.testing.assert_close(sample("euler", 10), sample("clean", 10))  # 1 - t = 0.1 > t_eps: the same


def test_heun_takes_two_network_evaluations_per_step_but_the_last():
    calls = []
    head = build_head("flow", sampler="heun")
    forward = head.net.forward
    head.net.forward = lambda *args: calls.append(1) or forward(*args)
    head.sample(torch.zeros(2, COND_DIM), steps=7)
    assert len(calls) == head.network_evaluations(7) == 13
    assert build_head("flow", sampler="euler").network_evaluations(7) == build_head().network_evaluations(7) == 7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: the CPU case is in GeneratorContract")
@pytest.mark.parametrize("name", ["diffusion", "flow"])
def test_the_sampling_state_stays_fp32_under_bf16_autocast_on_a_gpu(name):
    head = build_head(name).cuda().eval()
    perturb_parameters(head)
    h = torch.randn(64, COND_DIM, device="cuda")
    full = head.sample(h, rng=torch.Generator("cuda").manual_seed(0))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        mixed = head.sample(h.bfloat16(), rng=torch.Generator("cuda").manual_seed(0))
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, full, atol=0.1, rtol=0.05)


def fit_batch(head, steps=300):
    """Train ``head`` on 8 conditions with one state each; return them and the fixed-noise loss ratio."""
    h = torch.randn(8, COND_DIM)
    z = 1.5 * torch.cat([torch.eye(STATE_DIM), -torch.eye(STATE_DIM)])  # 8 states, >= 2.1 apart

    def fixed_noise_loss():
        torch.manual_seed(1)
        with torch.no_grad():
            return head.loss(h.repeat(16, 1), z.repeat(16, 1)).mean().item()

    before = fixed_noise_loss()
    optimizer = torch.optim.Adam(head.parameters(), lr=2e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        head.loss(h, z).mean().backward()
        optimizer.step()
    return h, z, fixed_noise_loss() / before


def assert_lands_on_its_own_state(samples, z):
    assert torch.equal(torch.cdist(samples, z).argmin(dim=1), torch.arange(len(z)))
    assert (samples - z).norm(dim=-1).mean() < 0.5


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_diffusion_head_memorises_and_samples_a_batch(prediction):
    head = build_head(prediction=prediction, width=64)
    h, z, ratio = fit_batch(head)
    assert ratio < 0.5
    assert_lands_on_its_own_state(head.sample(h, rng=torch.Generator().manual_seed(0)), z)


@pytest.mark.parametrize("prediction", ["x", "v"])
def test_flow_head_memorises_and_samples_a_batch_with_euler_and_heun(prediction):
    head = build_head("flow", prediction=prediction, width=64)
    h, z, ratio = fit_batch(head)
    assert ratio < 0.5
    for sampler in ("euler", "heun"):
        head.cfg = attrs.evolve(head.cfg, sampler=sampler)
        samples = head.sample(h, steps=20, rng=torch.Generator().manual_seed(0))
        assert_lands_on_its_own_state(samples, z)


def test_activation_checkpointing_gives_the_same_gradients():
    tokens, labels = tokens_and_labels()

    def gradients(checkpointing):
        torch.manual_seed(0)
        model = build_backbone()
        if checkpointing:
            model.enable_activation_checkpointing()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            loss = model(tokens, labels).square().mean()
        loss.backward()
        return [p.grad for p in model.parameters()], len(saved)

    (plain, kept), (recomputed, kept_checkpointed) = gradients(False), gradients(True)
    assert kept_checkpointed < kept / 2  # the blocks' activations are not kept
    for a, b in zip(plain, recomputed):
        torch.testing.assert_close(a, b)
