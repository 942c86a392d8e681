"""The built-in transformer backbone and diffusion head beyond their contracts (see
test_builtin_contracts.py): limits, the diffusion maths, and fitting a batch."""

import pytest
import torch

from prakit import registry

TOKEN_DIM, SEQ_LEN, NUM_CLASSES = 12, 9, 10
STATE_DIM, COND_DIM = 4, 16


def build_backbone(**fields):
    cfg = registry.get("backbone").config("transformer", width=32, depth=2, heads=2, **fields)
    return registry.get("backbone").build(cfg, token_dim=TOKEN_DIM, seq_len=SEQ_LEN, num_classes=NUM_CLASSES)


def build_head(**fields):
    cfg = registry.get("generator").config("diffusion", **{"width": 32, "depth": 2, **fields})
    return registry.get("generator").build(cfg, state_dim=STATE_DIM, cond_dim=COND_DIM)


def tokens_and_labels(batch=3, length=SEQ_LEN - 1):
    return torch.randn(batch, length, TOKEN_DIM), torch.tensor([0, 4, NUM_CLASSES])[:batch]


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def test_registered_by_the_models_plugin():
    for kind, name in [("backbone", "transformer"), ("generator", "diffusion")]:
        entry = registry.get(kind).entry(name)
        assert entry.plugin == "models"
        assert entry.description.startswith(("Pre-norm", "MAR-style"))


def test_config_validation():
    with pytest.raises(ValueError):
        registry.get("backbone").config("transformer", width=30, heads=4)
    with pytest.raises(ValueError):
        registry.get("backbone").config("transformer", positions="rope")
    with pytest.raises(ValueError):
        registry.get("generator").config("diffusion", prediction="x")


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


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_exact_denoiser_has_zero_loss_and_samples_its_target(prediction, monkeypatch):
    head = build_head(prediction=prediction)
    h, z = torch.randn(6, COND_DIM), torch.randn(6, STATE_DIM).clamp(-2, 2)

    def exact(x_t, t, h_rows):  # the true eps (or v = sqrt(ab) eps - sqrt(1 - ab) z) of rows of z
        target = z.repeat(len(x_t) // len(z), 1)
        a, b = head.alpha_bar[t, None].sqrt(), (1 - head.alpha_bar[t, None]).sqrt()
        eps = (x_t - a * target) / b
        return eps if prediction == "eps" else a * eps - b * target

    monkeypatch.setattr(head, "denoise", exact)
    assert head.loss(h, z).max() < 1e-6
    sample = head.sample(h, steps=7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample, z, rtol=0, atol=1e-4)

def test_sample_clips_the_clean_estimate():
    # At init the head predicts eps = 0, so the clean estimate x_t / sqrt(alpha_bar) explodes.
    h = torch.randn(64, COND_DIM)
    clipped = build_head(clip_range=2.0).sample(h, steps=10, generator=torch.Generator().manual_seed(0))
    assert clipped.abs().max() <= 2.0
    unclipped = build_head(clip_x0=False).sample(h, steps=10, generator=torch.Generator().manual_seed(0))
    assert unclipped.abs().max() > 10.0


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_diffusion_head_memorises_and_samples_a_batch(prediction):
    head = build_head(prediction=prediction, width=64)
    h = torch.randn(8, COND_DIM)
    z = 1.5 * torch.cat([torch.eye(STATE_DIM), -torch.eye(STATE_DIM)])  # 8 states, >= 2.1 apart

    def fixed_noise_loss():
        torch.manual_seed(1)
        with torch.no_grad():
            return head.loss(h.repeat(16, 1), z.repeat(16, 1)).mean().item()

    before = fixed_noise_loss()
    optimizer = torch.optim.Adam(head.parameters(), lr=2e-3)
    for _ in range(300):
        optimizer.zero_grad()
        head.loss(h, z).mean().backward()
        optimizer.step()
    assert fixed_noise_loss() < 0.5 * before
    # DDIM from noise lands on each condition's own memorised state.
    samples = head.sample(h, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.cdist(samples, z).argmin(dim=1), torch.arange(8))
    assert (samples - z).norm(dim=-1).mean() < 0.5

