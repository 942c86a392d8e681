"""Training utilities: the learning-rate schedule, EMA, RNG state, checkpoints, and the training
step with activation checkpointing."""

import io
import itertools
import json
import math
import os
import random
import subprocess
import sys
import time
import warnings

import attrs
import numpy as np
import pytest
import torch
from helpers import QUICKSTART, SMALL_RUN
from torch import nn

from prakit.config import OptimConfig, load_config
from prakit.training import (
    EMA,
    CheckpointError,
    latest_checkpoint,
    learning_rate,
    list_checkpoints,
    load_checkpoint,
    rng,
    save_checkpoint,
)
from prakit.training.distributed import Distributed
from prakit.training.step import TrainingStep


def assert_identical(a, b, where="state"):
    """Same structure, same plain values, bitwise-equal tensors of the same dtype."""
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


# -- schedule -----------------------------------------------------------------------------


def test_warmup_is_linear_and_reaches_the_peak_at_its_last_step():
    optim = OptimConfig(lr=1e-3, warmup_steps=4)
    rates = [learning_rate(optim, s, 100, 256) for s in range(6)]
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_peak_scales_base_lr_with_batch_size_unless_lr_is_set():
    assert learning_rate(OptimConfig(base_lr=1e-4), 0, 10, 1024) == pytest.approx(4e-4)
    assert learning_rate(OptimConfig(base_lr=1e-4, lr=3e-4), 0, 10, 1024) == pytest.approx(3e-4)


def test_constant_schedule_ignores_min_lr():
    optim = OptimConfig(lr=1e-3, min_lr=1e-5)
    assert {learning_rate(optim, s, 10, 256) for s in (0, 5, 9, 10, 20)} == {1e-3}


def test_cosine_runs_from_the_peak_after_warmup_to_min_lr_at_the_end():
    optim = OptimConfig(lr=1e-3, schedule="cosine", warmup_steps=10, min_lr=1e-5)
    assert learning_rate(optim, 10, 110, 256) == pytest.approx(1e-3)
    assert learning_rate(optim, 60, 110, 256) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(optim, 35, 110, 256) == pytest.approx(1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi / 4)) / 2)
    assert learning_rate(optim, 110, 110, 256) == pytest.approx(1e-5)
    assert learning_rate(optim, 500, 110, 256) == pytest.approx(1e-5)
    rates = [learning_rate(optim, s, 110, 256) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


# -- EMA ----------------------------------------------------------------------------------


def small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.GELU(), nn.Dropout(0.1), nn.Linear(8, 2))


def test_ema_update_matches_a_hand_computation_and_copies_buffers():
    torch.manual_seed(0)
    model = small_model()
    weight0 = model[0].weight.detach().clone()
    ema = EMA(model, 0.9)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    weight1 = model[0].weight.detach().clone()
    model(torch.randn(5, 4))  # training mode: BatchNorm's running statistics move
    ema.update(model)
    with torch.no_grad():
        model[0].weight.mul_(-2.0)
    ema.update(model)
    expected = 0.9 * (0.9 * weight0 + 0.1 * weight1) + 0.1 * model[0].weight
    torch.testing.assert_close(ema.state_dict()["0.weight"], expected)
    for name in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert_identical(ema.state_dict()[name], model.state_dict()[name], name)


def test_ema_shadow_is_float32_and_loads_into_a_module():
    model = small_model().to(torch.bfloat16)
    ema = EMA(model, 0.99)
    assert ema.state_dict()["0.weight"].dtype == torch.float32
    assert ema.state_dict()["1.num_batches_tracked"].dtype == torch.int64
    fresh = small_model()
    fresh.load_state_dict(ema.state_dict())
    torch.testing.assert_close(fresh[0].weight, model[0].weight.float())


def test_applied_swaps_the_ema_weights_in_and_restores_the_live_ones():
    torch.manual_seed(0)
    model = small_model()
    ema = EMA(model, 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model(torch.randn(5, 4))
    live = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="inside"):
        with ema.applied(model) as swapped:
            assert swapped is model
            assert_identical(model.state_dict(), ema.state_dict())
            raise RuntimeError("inside")
    assert_identical(model.state_dict(), live)


def test_ema_state_dict_round_trip_checks_keys():
    model = small_model()
    ema, other = EMA(model, 0.9), EMA(small_model(), 0.9)
    other.load_state_dict(ema.state_dict())
    assert_identical(other.state_dict(), ema.state_dict())
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({k: v for k, v in ema.state_dict().items() if k != "0.bias"})


# -- RNG ----------------------------------------------------------------------------------


def draws():
    out = [random.random(), np.random.rand(3).tolist(), torch.rand(3)]
    if torch.cuda.is_available():
        out.append(torch.rand(3, device="cuda").cpu())
    return out


def test_rng_restore_reproduces_the_draws_after_a_weights_only_round_trip():
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    state = rng.capture()
    expected = draws()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    draws()
    rng.restore(torch.load(buffer, weights_only=True))
    assert_identical(draws(), expected)


def seeded_draws(seed: int) -> list:
    rng.seed_all(seed)
    return draws()


def test_each_rank_and_each_resumed_step_seeds_its_own_stream_in_every_generator():
    streams = [seeded_draws(rng.rank_seed(0, rank, step)) for rank, step in ((0, 0), (1, 0), (0, 8))]
    for other in streams[1:]:
        assert all(not torch.equal(torch.as_tensor(a), torch.as_tensor(b)) for a, b in zip(streams[0], other))
    assert_identical(seeded_draws(rng.rank_seed(0, 1)), streams[1])
    assert rng.rank_seed(0, 0) != rng.rank_seed(1, 0)


def test_restore_rank_restores_its_own_state_or_reseeds_on_another_world_size():
    states, expected = [], []
    for rank in range(2):
        rng.seed_all(rng.rank_seed(0, rank))
        states.append(rng.capture())
        expected.append(draws())
    assert rng.restore_rank(states, 1, 2, seed=0, step=4)
    assert_identical(draws(), expected[1])
    assert not rng.restore_rank(states, 2, 3, seed=0, step=4)  # three ranks: rank 2 begins a fresh stream
    assert_identical(draws(), seeded_draws(rng.rank_seed(0, 2, 4)))


def test_a_checkpoint_from_before_per_rank_states_holds_one_ranks_state(tmp_path):
    from prakit.training.distributed import Distributed
    from prakit.training.loop import restore_rng

    path, cpu = tmp_path / "ckpt-00000004.pt", torch.device("cpu")
    state = rng.capture()  # what "rng" held before: a single state
    expected = draws()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restore_rng(state, Distributed(0, 1, 0, cpu), 0, 4, path)
    assert_identical(draws(), expected)
    with pytest.warns(UserWarning, match=r"ckpt-00000004.pt holds the random states of 1 rank\(s\) and this run has 2"):
        restore_rng(state, Distributed(0, 2, 0, cpu), 0, 4, path)
    assert_identical(draws(), seeded_draws(rng.rank_seed(0, 0, 4)))


# -- checkpoints: round trip --------------------------------------------------------------


class Run:
    """A small model with AdamW, the schedule, two EMAs and RNG-dependent data and dropout."""

    optim = OptimConfig(lr=1e-2, schedule="cosine", warmup_steps=2, ema_decays=(0.99, 0.9))

    def __init__(self, seed: int):
        torch.manual_seed(seed)
        self.model = small_model()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), betas=self.optim.betas)
        self.emas = {str(d): EMA(self.model, d) for d in self.optim.ema_decays}
        self.step = 0

    def train(self, steps: int) -> None:
        for _ in range(steps):
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(self.optim, self.step, 10, 32)
            x = torch.randn(32, 4) * (1 + random.random()) + float(np.random.rand())
            loss = self.model(x).square().mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            for ema in self.emas.values():
                ema.update(self.model)
            self.step += 1

    def state(self) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": {name: ema.state_dict() for name, ema in self.emas.items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": rng.capture(),
            "data": {"epoch": 0, "position": self.step * 32},
            "config": json.dumps(attrs.asdict(self.optim)),
        }

    def load(self, state: dict) -> None:
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        for name, ema in self.emas.items():
            ema.load_state_dict(state["ema"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        rng.restore(state["rng"])


def test_checkpoint_round_trip_is_exact_and_resumed_training_matches_bit_for_bit(tmp_path):
    run = Run(seed=0)
    run.train(3)
    state = run.state()
    path = save_checkpoint(tmp_path, run.step, state, keep_last=2)
    assert path == tmp_path / "ckpt-00000003.pt"
    loaded = load_checkpoint(path)
    assert_identical(loaded, state)  # before training mutates the tensors in ``state``
    run.train(4)

    resumed = Run(seed=1)
    resumed.load(load_checkpoint(path))
    resumed.train(4)
    assert_identical(resumed.state(), run.state())


# -- checkpoints: rotation, damage and leftovers -------------------------------------------


def minimal_state(step: int, **extra) -> dict:
    return {"step": step, "model": {"w": torch.full((4,), float(step))}, "config": "{}", **extra}


def test_rotation_keeps_the_newest_and_every_milestone(tmp_path):
    for step in range(1, 8):
        save_checkpoint(tmp_path, step, minimal_state(step), keep_last=2, milestone=step in (2, 4))
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["ckpt-00000002.milestone.pt", "ckpt-00000004.milestone.pt", "ckpt-00000006.pt", "ckpt-00000007.pt"]
    assert load_checkpoint(tmp_path / "ckpt-00000004.milestone.pt")["step"] == 4


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    save_checkpoint(tmp_path, 1, minimal_state(1), keep_last=3)
    newest = save_checkpoint(tmp_path, 2, minimal_state(2, big=torch.zeros(10_000)), keep_last=3)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{newest.name}.*delete it: a run then resumes from the previous checkpoint"):
        load_checkpoint(newest)
    with pytest.warns(UserWarning, match=newest.name):
        assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-00000001.pt"


def test_files_that_are_not_checkpoints_raise_checkpoint_error(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint" * 100)
    incomplete = tmp_path / "incomplete.pt"
    torch.save({"model": {}}, incomplete)
    with pytest.raises(CheckpointError, match="garbage.pt is not a complete archive"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="incomplete.pt lacks step, config"):
        load_checkpoint(incomplete)
    with pytest.raises(CheckpointError, match="no checkpoint file at .*none.pt"):
        load_checkpoint(tmp_path / "none.pt")
    assert latest_checkpoint(tmp_path) is None


def test_weights_that_do_not_fit_name_the_keys_and_shapes_that_differ():
    from prakit.training.checkpoint import load_weights

    model = nn.Sequential(*(nn.Linear(2, 2) for _ in range(3)))
    weights = {**model.state_dict(), "0.weight": torch.zeros(3, 2), "9.weight": torch.zeros(1)}
    del weights["1.bias"]
    with pytest.raises(CheckpointError) as caught:
        load_weights(model, weights, "c.pt")
    assert str(caught.value) == (
        "checkpoint c.pt does not fit the model its config builds (missing: 1.bias; unexpected: 9.weight; "
        "of another shape: 0.weight 3x2 (the model's 2x2)); it was written by another version of the model's "
        "plugins, or edited")
    with pytest.raises(CheckpointError, match=r"\(missing: 0.weight, 0.bias, 1.weight and 3 more\); "):
        load_weights(model, {}, "c.pt")


def test_leftover_temp_files_are_ignored_and_cleaned_by_the_next_save(tmp_path):
    save_checkpoint(tmp_path, 1, minimal_state(1), keep_last=2)
    leftover = tmp_path / ".ckpt-00000002.pt.0123abcd.tmp"
    leftover.write_bytes(b"half a checkpoint")
    assert list_checkpoints(tmp_path) == [tmp_path / "ckpt-00000001.pt"]
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-00000001.pt"
    save_checkpoint(tmp_path, 2, minimal_state(2), keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000001.pt", "ckpt-00000002.pt"]


def test_save_refuses_state_that_weights_only_loading_would_refuse(tmp_path):
    with pytest.raises(TypeError, match="numpy"):
        save_checkpoint(tmp_path, 1, minimal_state(1, bad=np.zeros(3)), keep_last=1)
    with pytest.raises(ValueError, match="config"):
        save_checkpoint(tmp_path, 1, {"step": 1, "model": {}}, keep_last=1)
    assert list(tmp_path.iterdir()) == []


SAVE_FOREVER = """
import sys, torch
from prakit.training import save_checkpoint
for step in range(1, 1_000_000):
    state = {"step": step, "model": {"w": torch.full((8_000_000,), float(step))}, "config": "{}"}
    print("start", flush=True)
    save_checkpoint(sys.argv[1], step, state, keep_last=1)
    print("done", flush=True)
"""


def test_sigkill_in_the_middle_of_a_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    command = [sys.executable, "-c", SAVE_FOREVER, str(tmp_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            for saved in (1, 2):  # time the second save, then kill the third at a random moment
                assert proc.stdout.readline() == "start\n"
                started = time.monotonic()
                assert proc.stdout.readline() == "done\n"
            duration = time.monotonic() - started
            assert proc.stdout.readline() == "start\n"
            time.sleep(random.uniform(0, duration))
        finally:
            proc.kill()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the interrupted save left no partial file under a checkpoint name
        path = latest_checkpoint(tmp_path)
    state = load_checkpoint(path)
    assert state["step"] >= saved
    assert torch.equal(state["model"]["w"], torch.full((8_000_000,), float(state["step"])))
    save_checkpoint(tmp_path, 10**6, minimal_state(10**6), keep_last=1)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt-01000000.pt"]


# -- checkpoints: safety ------------------------------------------------------------------


class Payload:
    """Pickles as a call to ``os.system``, as a malicious checkpoint would."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_carrying_a_pickle_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt-00000002.pt"
    save_checkpoint(tmp_path, 1, minimal_state(1), keep_last=2)
    torch.save(minimal_state(2, payload=Payload(marker)), path)
    torch.load(path, weights_only=False)  # the payload is live: unsafe loading runs it
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CheckpointError, match=f"{path.name}.*system"):
        load_checkpoint(path)
    with pytest.warns(UserWarning, match=path.name):
        assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-00000001.pt"
    assert not marker.exists()


def test_ema_decay_warms_up_with_the_step():
    module = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(module.weight)
    ema = EMA(module, 0.999)
    torch.nn.init.ones_(module.weight)
    ema.update(module, step=0)  # decay min(0.999, 1/10) = 0.1
    assert ema.state_dict()["weight"].item() == pytest.approx(0.9)
    ema.update(module)  # the full decay
    assert ema.state_dict()["weight"].item() == pytest.approx(0.9 + 0.1 * 0.001)


# -- the training step with activation checkpointing ----------------------------------------

#: Rollouts trained: PRA at its defaults (the decoder makes the inputs), calibrated PRA (it samples
#: the head every step here) and exact rollout (the backbone and head draw tokens with the KV cache).
ROLLOUTS = {
    "pra": '{name="pra"}',
    "pra calibrated": '{name="pra",sigma="calibrated",calib_warmup=0,calib_every=1}',
    "exact_rollout": '{name="exact_rollout",fraction=0.75,window="rest",starts="per_row",min_prefix=0,head_steps=2}',
}


def train_steps(rollout: str, checkpointing: bool, steps: int = 3):
    """``steps`` training steps of the micro model on one batch of random 8x8 images: their results,
    the trained weights and EMAs, the global RNG state after them, and how often block 0 ran."""
    overrides = [*SMALL_RUN, f"model.rollout={rollout}", f"train.activation_checkpointing={str(checkpointing).lower()}"]
    training = TrainingStep.create(load_config(QUICKSTART, overrides), Distributed(0, 1, 0, torch.device("cpu")))
    calls = []
    training.model.backbone.blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))  # recomputing starts it too
    images = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batches = itertools.repeat((images, torch.arange(4)))
    results = [training(step, batches) for step in range(steps)]
    emas = {name: ema.state_dict() for name, ema in training.emas.items()}
    return results, training.model.state_dict(), emas, torch.get_rng_state(), len(calls)


@pytest.mark.parametrize("rollout", ROLLOUTS.values(), ids=ROLLOUTS.keys())
def test_activation_checkpointing_trains_the_same_steps_and_draws_the_same_rollouts(rollout):
    results, weights, emas, rng_state, calls = train_steps(rollout, checkpointing=False)
    results_c, weights_c, emas_c, rng_state_c, calls_c = train_steps(rollout, checkpointing=True)
    assert calls_c == calls + len(results)  # each step's backward recomputes the block, the rollout's calls are alike
    for result, result_c in zip(results, results_c):
        torch.testing.assert_close(result_c.losses, result.losses)
        torch.testing.assert_close(result_c.grad_norm, result.grad_norm)
    torch.testing.assert_close(weights_c, weights, equal_nan=True)  # an uncalibrated sigma's measurement is NaN
    torch.testing.assert_close(emas_c, emas, equal_nan=True)
    assert torch.equal(rng_state_c, rng_state)  # the recomputation draws nothing from the global generator
