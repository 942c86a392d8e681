"""The rollout approximators' settings do what their fields say, and report what they measured."""

import json
import math
import warnings

import pytest
import torch
from helpers import QUICKSTART, batch, prakit, rollout_inputs, small_model, small_run

from prakit import registry
from prakit.training.metrics import read_metrics


def noise(**fields):
    return registry.build(registry.get("rollout").config("noise_injection", **fields))


def perturbation(rollout, x, step=0, seed=0):
    torch.manual_seed(seed)
    return rollout(x, None, None, model=None, step=step) - x


def test_noise_injection_draws_one_sigma_per_sample_or_one_per_position():
    x = torch.zeros(8, 16, 1024)
    sigma = {}  # (B, L): the sigma each position drew
    for per in ("sample", "position"):
        eps = perturbation(noise(schedule="uniform", sigma_min=0.0, sigma_max=0.5, per=per, clamp=False), x)
        sigma[per] = eps.std(-1)
    within = {per: (s.std(1) / s.mean(1)).mean().item() for per, s in sigma.items()}  # relative spread in a sample
    assert within["sample"] < 0.05 < 0.3 < within["position"]
    assert sigma["sample"].mean(1).std() > 0.05  # one draw per sample: the samples differ


def test_noise_injection_clamps_its_inputs_to_the_token_range():
    x = torch.rand(4, 16, 48) * 2 - 1
    clamped = x + perturbation(noise(schedule="fixed", sigma_max=0.5), x)
    assert clamped.min() == -1 and clamped.max() == 1
    loose = x + perturbation(noise(schedule="fixed", sigma_max=0.5, clamp=False), x)
    assert loose.min() < -1.2 and loose.max() > 1.2


def test_noise_injection_reports_the_rms_of_the_perturbation_it_applied_after_clamping():
    x = torch.rand(4, 16, 48) * 2 - 1
    rollout = noise(schedule="fixed", sigma_max=0.5)
    assert rollout.measurements() == {}  # nothing measured before the first step
    applied = perturbation(rollout, x)
    measured = rollout.measurements()["perturbation_rms"]
    assert measured == pytest.approx(applied.square().mean().sqrt().item(), rel=1e-6)
    assert measured < 0.5 * 0.97  # the clamp took some of it


def test_uniform_noise_has_the_rms_of_u0_sigma_max():
    """sigma ~ U[0, s]: E[sigma^2] = s^2 / 3, so the RMS is s / sqrt(3); a target RMS sets s."""
    rollout = noise(schedule="uniform", sigma_min=0.0, sigma_max=0.3, per="position", clamp=False)
    perturbation(rollout, torch.zeros(32, 64, 256))
    assert rollout.measurements()["perturbation_rms"] == pytest.approx(0.3 / math.sqrt(3), rel=0.02)


def test_decaying_noise_falls_from_sigma_max_to_sigma_min_at_decay_steps_and_stays_there():
    rollout = noise(schedule="decay", sigma_max=0.1, sigma_min=0.02, decay_steps=100, clamp=False)
    x = torch.zeros(16, 64, 256)

    def rms(step):
        return perturbation(rollout, x, step=step).square().mean().sqrt().item()

    assert rms(0) == pytest.approx(0.1, rel=0.02)
    assert rms(50) == pytest.approx(0.06, rel=0.02)  # the cosine's midpoint
    assert rms(100) == pytest.approx(0.02, rel=0.02) and rms(1000) == pytest.approx(0.02, rel=0.02)


def test_noise_injection_refuses_a_sigma_max_below_sigma_min():
    with pytest.raises(ValueError, match="sigma_max"):
        registry.get("rollout").config("noise_injection", sigma_min=0.2, sigma_max=0.1)


def test_decoded_teacher_forcing_feeds_the_decoded_true_states():
    """pra with a fixed sigma of 0: the inputs are D(z), the decoder's reconstruction of the truth."""
    model = small_model(rollout=registry.get("rollout").config("pra", sigma="fixed", sigma_max=0.0))
    images, labels = batch()
    x = model.patchify(images)
    with torch.no_grad():
        decoded = model.states_to_tokens(model.decoder.encode(x))
    torch.testing.assert_close(rollout_inputs(model, images, labels), decoded)
    assert not torch.allclose(decoded, x)


def selfsample(**fields):
    model = small_model(rollout=registry.get("rollout").config("pra_selfsample", steps=2, **fields))
    images, labels = batch(n=16)
    return model, images, labels


def test_selfsample_reads_the_ground_truth_until_its_warm_up_ends_then_mixes_in_its_own_tokens():
    model, images, labels = selfsample(mix=0.5, warmup=10)
    x = model.patchify(images)
    torch.testing.assert_close(rollout_inputs(model, images, labels, step=9), x)
    assert model.rollout.measurements() == {"replaced": 0.0}
    inputs = rollout_inputs(model, images, labels, step=10)
    own = (inputs != x).any(-1)  # positions that took the model's token
    kept = (inputs == x).all(-1)
    assert torch.equal(own, ~kept)
    share = own.float().mean().item()
    assert 0.3 < share < 0.7  # about half of 16 x 4 positions
    assert model.rollout.measurements() == {"replaced": pytest.approx(share)}


def test_exact_rollout_reads_the_ground_truth_until_its_warm_up_ends_then_its_own_tokens():
    rollout = registry.get("rollout").config("exact_rollout", warmup=10, min_prefix=0, head_steps=2)
    model, (images, labels) = small_model(rollout=rollout), batch(n=8)
    x = model.patchify(images)
    torch.testing.assert_close(rollout_inputs(model, images, labels, step=9), x)
    assert model.rollout.measurements()["rolled_share"] == 0.0
    rolled = rollout_inputs(model, images, labels, step=10)
    assert (rolled != x).any(-1).float().mean() > 0.25
    assert model.rollout.measurements()["rolled_share"] > 0.25


def test_selfsample_at_mix_1_replaces_every_input():
    model, images, labels = selfsample()
    inputs = rollout_inputs(model, images, labels)
    assert (inputs != model.patchify(images)).any(-1).all()
    assert model.rollout.measurements() == {"replaced": 1.0}


def calibrated(**fields):
    cfg = registry.get("rollout").config("pra", sigma="calibrated", calib_warmup=1, calib_every=1, calib_tokens=16,
                                         calib_steps=2, **fields)
    model = small_model(rollout=cfg)
    images, labels = batch()
    return model, images, labels


def test_calibrated_pra_reports_the_error_it_measured_and_the_sigma_it_used():
    model, images, labels = calibrated(sigma_max=100.0, calib_scale=0.5)
    rollout_inputs(model, images, labels, step=0)
    assert model.rollout.measurements() == {"sigma": 100.0}  # sigma_max until the first measurement
    rollout_inputs(model, images, labels, step=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within its range: no warning
        measured = model.rollout.measurements()
    error = model.rollout.measured_sigma.item()
    assert measured == {"measured_error": error, "sigma": pytest.approx(0.5 * error), "sigma_clamped": 0.0}


@pytest.mark.parametrize("bound, fields", [("sigma_max", {"sigma_max": 0.01}),
                                           ("sigma_min", {"sigma_min": 50.0, "sigma_max": 100.0})])
def test_calibrated_pra_says_once_when_its_sigma_sits_on_a_clamp(bound, fields):
    model, images, labels = calibrated(**fields)
    rollout_inputs(model, images, labels, step=1)
    with pytest.warns(UserWarning, match=f"sits on its clamp.*{bound} holds it at {fields[bound]:.3g}"):
        measured = model.rollout.measurements()
    assert measured["sigma"] == pytest.approx(fields[bound]) and measured["sigma_clamped"] == 1.0
    rollout_inputs(model, images, labels, step=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        assert model.rollout.measurements()["sigma_clamped"] == 1.0


@pytest.mark.slow
def test_training_logs_the_calibrated_sigma_and_warns_once_when_it_is_clamped(store, tmp_path):
    rollout = '{name="pra",sigma="calibrated",calib_warmup=0,calib_every=1,calib_tokens=8,calib_steps=2,sigma_max=0.01}'
    done = prakit("train", str(QUICKSTART), *small_run(store, "train.steps=3", f"model.rollout={rollout}"),
                  "--run-dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("prakit: warning: calibrated PRA sigma sits on its clamp") == 1
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [row["rollout/sigma"] for row in rows] == pytest.approx([0.01] * 3)
    assert all(row["rollout/sigma_clamped"] == 1.0 and row["rollout/measured_error"] > 0.01 for row in rows)
    json.dumps(rows, allow_nan=False)  # every logged number is finite JSON
