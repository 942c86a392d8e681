"""The training job end to end: real subprocesses, real SIGKILL, real gloo DDP, real stores."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import QUICKSTART, await_checkpoint, losses, prakit, small_run

from prakit.config import load_config
from prakit.errors import ConfigError, PrakitError
from prakit.training.loop import RunDirectoryError, train
from prakit.training.step import NonFiniteLossError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, env, **kw):
    """``prakit ARGS`` in two gloo processes started by torchrun (``--standalone`` picks a free port)."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "prakit", *args],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **env}, **kw,
    )


def ranks(*args, env=None, world_size=2, script=None, **kw) -> list[subprocess.Popen]:
    """``prakit ARGS`` (or the Python ``script`` with ARGS) in ``world_size`` gloo processes started by
    hand: torchrun kills the other ranks as soon as one fails, and its ranks outlive a killed torchrun."""
    group = {"OMP_NUM_THREADS": "1", "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(free_port()), **(env or {})}
    program = ["-c", script] if script else ["-m", "prakit"]
    return [subprocess.Popen([sys.executable, *program, *args], **kw,
                             env={**os.environ, **group, "RANK": str(r), "LOCAL_RANK": str(r)})
            for r in range(world_size)]




def kill_at_checkpoint(procs: list[subprocess.Popen], run_dir: Path, step: int) -> None:
    """SIGKILL ``procs`` as soon as ``run_dir`` holds the checkpoint at ``step``, before the run's end."""
    checkpoints, name = run_dir / "checkpoints", f"ckpt-{step:08d}*.pt"
    await_checkpoint(run_dir, name, timeout=120)
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    codes = [proc.wait() for proc in procs]
    assert codes == [-signal.SIGKILL] * len(procs), f"the run ended before the kill (exit status {codes})"
    assert list(checkpoints.glob(name)), "no checkpoint before the kill"




@pytest.mark.slow
def test_a_killed_run_resumes_with_identical_losses(store, tmp_path):
    args = ["train", str(QUICKSTART), *small_run(store, "train.steps=16")]
    whole = prakit(*args, "--run-dir", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    reference = losses(tmp_path / "whole")
    assert [s for s, _ in reference] == list(range(16))

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "prakit", *args, "--run-dir", str(killed_dir)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kill_at_checkpoint([proc], killed_dir, 8)
    resumed = prakit(*args, "--run-dir", str(killed_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert losses(killed_dir) == reference  # bit for bit, each step logged once


@pytest.mark.slow
def test_a_run_killed_at_twenty_random_moments_and_resumed_each_time_logs_the_uninterrupted_losses(store, tmp_path):
    import random

    args = ["train", str(QUICKSTART), *small_run(store, "train.steps=40", "train.ckpt_every=1", "train.keep_last=2")]
    whole = prakit(*args, "--run-dir", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    killed_dir, moments = tmp_path / "killed", random.Random(0)
    for _ in range(20):  # at startup, mid-step, mid-save: wherever the moment falls
        proc = subprocess.Popen([sys.executable, "-m", "prakit", *args, "--run-dir", str(killed_dir)],
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(moments.uniform(0.5, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = prakit(*args, "--run-dir", str(killed_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert losses(killed_dir) == losses(tmp_path / "whole")  # bit for bit, each step logged once


@pytest.mark.slow
def test_each_rank_draws_its_own_noise_and_a_killed_two_rank_run_resumes_with_identical_losses(store, tmp_path):
    import torch

    from prakit.training.checkpoint import load_checkpoint

    args = ["train", str(QUICKSTART), *small_run(store, "train.steps=12")]
    whole = torchrun(*args, "--run-dir", str(tmp_path / "whole"), env={})
    assert whole.returncode == 0, whole.stderr
    reference = losses(tmp_path / "whole")
    assert [s for s, _ in reference] == list(range(12))
    states = load_checkpoint(tmp_path / "whole" / "checkpoints" / "ckpt-00000012.pt")["rng"]
    assert len(states) == 2 and not torch.equal(states[0]["torch"], states[1]["torch"])  # a stream per rank

    killed_dir = tmp_path / "killed"
    kill_at_checkpoint(ranks(*args, "--run-dir", str(killed_dir), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL), killed_dir, 8)
    resumed = torchrun(*args, "--run-dir", str(killed_dir), env={})
    assert resumed.returncode == 0, resumed.stderr
    assert losses(killed_dir) == reference  # each rank resumed its own stream


@pytest.mark.slow
def test_resuming_on_another_number_of_ranks_begins_fresh_streams_and_says_so(store, tmp_path):
    from prakit.training.checkpoint import load_checkpoint

    two = torchrun("train", str(QUICKSTART), *small_run(store, "train.steps=4"), "--run-dir", str(tmp_path / "a"), env={})
    assert two.returncode == 0, two.stderr
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for run_dir in (tmp_path / "a", tmp_path / "b"):
        one = prakit("train", str(QUICKSTART), *small_run(store, "train.steps=8"), "--run-dir", str(run_dir))
        assert one.returncode == 0, one.stderr
        assert ("ckpt-00000004.pt holds the random states of 2 rank(s) and this run has 1: every rank begins a "
                "fresh random stream at step 4") in one.stderr
    assert [s for s, _ in losses(tmp_path / "a")] == list(range(8))
    assert losses(tmp_path / "a") == losses(tmp_path / "b")  # the fresh streams are a function of the checkpoint
    assert len(load_checkpoint(tmp_path / "a" / "checkpoints" / "ckpt-00000008.pt")["rng"]) == 1


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_with_the_same_global_batch(store, tmp_path, toy_distribution):
    # Deterministic components (toy plugin): the loss depends only on the batch and the weights. Each
    # rank draws its own noise, so only a model that draws none computes the same as one process.
    deterministic = ["model.backbone.name=toy", "model.generator.name=toy", "model.decoder.name=toy",
                     "model.rollout.name=teacher_forcing", "model.class_dropout=0.0", "train.steps=6"]
    args = ["train", str(QUICKSTART), *small_run(store, *deterministic)]
    env = {"PYTHONPATH": toy_distribution}
    one = prakit(*args, "--run-dir", str(tmp_path / "one"), env=env)
    assert one.returncode == 0, one.stderr
    two = torchrun(*args, "--run-dir", str(tmp_path / "two"), env=env)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("checkpoint: ") == 1  # the main rank reports the run
    single, double = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [s for s, _ in single] == [s for s, _ in double] == list(range(6))
    for (_, a), (_, b) in zip(single, double):
        assert a == pytest.approx(b, rel=1e-5)
    assert single[-1][1] < single[0][1]  # and it trains


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_stops_every_rank(store, tmp_path, toy_distribution):
    # Each rank stops by itself, with its own message.
    nan_on_rank_1 = ["model.backbone.name=toy", "model.generator.name=toy", "model.decoder.name=toy",
                     "model.rollout.name=toy_nan", "model.rollout.after=3", "model.rollout.rank=1", "train.steps=6"]
    args = ["train", str(QUICKSTART), *small_run(store, *nan_on_rank_1), "--run-dir", str(tmp_path / "run")]
    procs = ranks(*args, env={"PYTHONPATH": toy_distribution}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                  text=True)
    stderr = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [2, 2], stderr
    assert "non-finite loss at step 3 on rank 0 of 2: another rank's loss went non-finite" in stderr[0]
    assert "non-finite loss at step 3 on rank 1 of 2: the first non-finite output came from rollout" in stderr[1]


def test_a_non_finite_loss_stops_with_the_step_and_the_component(store, tmp_path, toy_plugin):
    cfg = load_config(QUICKSTART, small_run(store, "model.rollout.name=toy_nan", "model.rollout.after=5",
                                       "train.steps=10"))
    with pytest.raises(NonFiniteLossError) as excinfo:
        train(cfg, tmp_path / "run", progress=False)
    message = str(excinfo.value)
    assert message.startswith("non-finite loss at step 5: the first non-finite output came from rollout")
    assert "model.rollout = 'toy_nan'" in message
    assert "ckpt-00000004.pt" in message and Path(message.rsplit(" ", 1)[-1]).exists()


def test_a_checkpoint_of_non_finite_weights_is_not_called_the_last_good_one(store, tmp_path):
    import torch

    from prakit.training.checkpoint import load_checkpoint

    cfg = load_config(QUICKSTART, small_run(store, "train.steps=4", "train.ckpt_every=2"))
    train(cfg, tmp_path / "run", progress=False)
    longer = load_config(QUICKSTART, small_run(store, "train.steps=6", "train.ckpt_every=2"))
    checkpoints = tmp_path / "run" / "checkpoints"
    for step in (4, 2):  # first the newest only, then both
        state = load_checkpoint(checkpoints / f"ckpt-{step:08d}.pt")
        state["model"] = {key: value * float("nan") if value.is_floating_point() else value
                          for key, value in state["model"].items()}
        torch.save(state, checkpoints / f"ckpt-{step:08d}.pt")
        with pytest.raises(NonFiniteLossError) as excinfo:
            train(longer, tmp_path / "run", progress=False)
        saved = str(excinfo.value).split("; ", 1)[1]
        assert saved == (f"the last good checkpoint is {checkpoints / 'ckpt-00000002.pt'}, the newer ones hold "
                         "non-finite weights: delete them to resume from it" if step == 4 else
                         f"every checkpoint holds non-finite weights, up to {checkpoints / 'ckpt-00000004.pt'}: "
                         "train again with --no-resume")


def test_a_run_directory_of_another_config_is_refused_unless_forced(store, tmp_path):
    cfg = load_config(QUICKSTART, small_run(store, "train.steps=1"))
    train(cfg, tmp_path / "run", progress=False)
    other = load_config(QUICKSTART, small_run(store, "train.steps=1", "optim.lr=0.01"))
    with pytest.raises(RunDirectoryError, match=r"differs in: optim.lr\); choose another --run-dir"):
        train(other, tmp_path / "run", progress=False)
    longer = load_config(QUICKSTART, small_run(store, "train.steps=2"))  # a longer run is the same run
    assert train(longer, tmp_path / "run", progress=False).step == 2
    train(other, tmp_path / "run", force=True, resume=False, progress=False)


def test_a_mismatched_checkpoint_is_a_clear_error_and_is_kept(store, tmp_path):
    import torch

    from prakit.config import unstructure
    from prakit.run import load_model
    from prakit.training.checkpoint import CheckpointError, load_checkpoint

    cfg = load_config(QUICKSTART, small_run(store, "train.steps=1"))
    first = train(cfg, tmp_path / "run", progress=False)
    wider = load_config(QUICKSTART, small_run(store, "train.steps=1", "model.backbone.width=48"))
    with pytest.raises(CheckpointError, match=r"ckpt-00000001.pt was written by a different config "
                                              r"\(differs in: model.backbone.width\); pass --no-resume"):
        train(wider, tmp_path / "run", force=True, progress=False)
    assert first.checkpoint.exists()
    assert train(cfg, tmp_path / "run", progress=False).step == 1  # the run directory is still the first run's
    # weights that do not fit the config stored beside them
    state = load_checkpoint(first.checkpoint)
    state["config"] = json.dumps(unstructure(wider))
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match=r"edited.pt does not fit the model its config builds \(of another shape: "
                                              r"\S+ \d+(x\d+)* \(the model's \d+(x\d+)*\)"):
        load_model(tmp_path / "edited.pt", "none", torch.device("cpu"))


def test_no_resume_sets_the_earlier_run_aside_and_a_later_resume_continues_the_new_run(store, tmp_path, capsys):
    from prakit.training.checkpoint import list_checkpoints

    run = tmp_path / "run"
    first = train(load_config(QUICKSTART, small_run(store, "train.steps=8", "train.keep_last=1")), run, progress=False)
    old_losses = losses(run)
    fresh = load_config(QUICKSTART, small_run(store, "train.steps=4", "train.keep_last=1"))
    train(fresh, run, resume=False, progress=False)
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["ckpt-00000004.pt"]  # not rotated away
    assert [s for s, _ in losses(run)] == list(range(4))  # metrics of the new run alone
    (aside,) = (run / "previous").iterdir()
    assert f"the earlier run is set aside in {aside}" in capsys.readouterr().err
    assert (aside / "checkpoints" / first.checkpoint.name).exists() and losses(aside) == old_losses
    longer = load_config(QUICKSTART, small_run(store, "train.steps=6", "train.keep_last=1"))
    assert train(longer, run, progress=False).step == 6
    assert f"resuming {run} from ckpt-00000004.pt at step 4" in capsys.readouterr().err
    assert [s for s, _ in losses(run)] == list(range(6))


@pytest.mark.slow
def test_a_run_whose_checkpoints_all_fail_to_load_is_an_error_naming_them(store, tmp_path):
    from prakit.training.checkpoint import CheckpointError

    cfg = load_config(QUICKSTART, small_run(store, "train.steps=8", "train.keep_last=2"))
    train(cfg, tmp_path / "run", progress=False)
    for path in (tmp_path / "run" / "checkpoints").iterdir():
        path.write_bytes(b"garbage")
    longer = load_config(QUICKSTART, small_run(store, "train.steps=12"))
    with pytest.raises(CheckpointError, match=r"every checkpoint in .* fails to load \(checkpoint .*ckpt-00000008.pt is "
                                              r"not a complete archive.*ckpt-00000004.pt.*train with --no-resume"):
        train(longer, tmp_path / "run", progress=False)
    result = prakit("train", str(QUICKSTART), *small_run(store, "train.steps=12"), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "every checkpoint" in result.stderr


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_the_corrected_config(store, tmp_path):
    broken = load_config(QUICKSTART, small_run(store, "train.steps=1", "data.num_classes=3"))
    with pytest.raises(PrakitError, match="has 10 classes, more than data.num_classes = 3"):
        train(broken, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "config.toml").exists()
    fixed = load_config(QUICKSTART, small_run(store, "train.steps=1"))
    assert train(fixed, tmp_path / "run", progress=False).step == 1  # no --force needed
    other = load_config(QUICKSTART, small_run(store, "train.steps=1", "optim.lr=0.01"))
    with pytest.raises(RunDirectoryError, match="differs in: optim.lr"):  # a run with a checkpoint is protected
        train(other, tmp_path / "run", progress=False)


def test_a_model_that_cannot_be_built_or_cannot_fit_fails_before_the_run_directory_is_touched(store, tmp_path):
    unbuildable = load_config(QUICKSTART, small_run(store, "train.steps=1", "model.patch_size=3"))
    with pytest.raises(ConfigError, match="model.patch_size: 3 does not divide data.image_size 8"):
        train(unbuildable, tmp_path / "run", progress=False)
    absurd = load_config(QUICKSTART, small_run(store, "model.backbone.width=200000", "model.backbone.heads=4"))
    with pytest.raises(PrakitError, match=r"960.02G parameters \(960.02G in model.backbone\).* GiB, more than the .* GiB of cpu"):
        train(absurd, tmp_path / "run", progress=False)  # nothing allocated: this machine has far less
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_new_run_says_it_starts(store, tmp_path):
    result = prakit("train", str(QUICKSTART), *small_run(store, "train.steps=1"), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"prakit: starting a new run in {tmp_path / 'run'}\n")


@pytest.mark.slow
def test_sampling_is_identical_across_batch_sizes_and_resumed_runs(store, tmp_path):
    from prakit.data import SampleStore, open_store
    from prakit.sampling import sample_run, sampling_options

    cfg = load_config(QUICKSTART, small_run(store, "train.steps=4"))
    run = train(cfg, tmp_path / "run", progress=False).run_dir
    whole = sample_run(run, tmp_path / "a.zarr", num=6, options=sampling_options(run, {"batch_size": 6}), progress=False)
    small = sample_run(run, tmp_path / "b.zarr", num=6, options=sampling_options(run, {"batch_size": 4}), progress=False)
    a, b = open_store(whole), open_store(small)
    assert (a.images[:] == b.images[:]).all() and (a.labels[:] == b.labels[:]).all()
    assert a.labels[:].tolist() == [0, 1, 3, 5, 6, 8]  # class-balanced blocks over 10 classes
    # a sample run killed after its first batch and resumed (with another batch size) ends the same
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cut = tmp_path / "c.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "prakit", "sample", str(run), "--num", "6", "--out", str(cut),
                             "--batch-size", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = cut / "progress" / "shard-000000.json"
    deadline = time.time() + 60
    while time.time() < deadline and not record.exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= SampleStore(cut).written < 6, "the kill should land mid-run"
    done = prakit("sample", str(run), "--num", "6", "--out", str(cut), "--batch-size", "4")
    assert done.returncode == 0, done.stderr
    assert (open_store(cut).images[:] == a.images[:]).all()
    compiled = prakit("sample", str(run), "--num", "6", "--out", str(cut), "--compile", "default")
    assert compiled.returncode == 0, compiled.stderr  # how fast, not what: still the same store
    # other options never add to that store, unless told to start over
    other = prakit("sample", str(run), "--num", "6", "--out", str(cut), "--guidance", "7")
    assert other.returncode == 2 and "another sampling" in other.stderr and "--restart" in other.stderr
    redone = prakit("sample", str(run), "--num", "6", "--out", str(cut), "--guidance", "7", "--restart")
    assert redone.returncode == 0, redone.stderr
    assert open_store(cut).attrs["sampling"]["cfg_scale"] == 7


#: One rank of a two-process run, automatic garbage collection off: after ``train`` has returned
#: (or raised), is a DDP wrapper, and so the process group it holds, still alive?
LEFT_BEHIND = """
import gc, sys
gc.disable()
from prakit.config import load_config
from prakit.errors import PrakitError
from prakit.training.loop import train
try:
    train(load_config(sys.argv[1], sys.argv[3:]), sys.argv[2], progress=False)
except PrakitError:
    pass
left = [o for o in gc.get_objects() if type(o).__name__ == "DistributedDataParallel"]
print(len(left), "DDP left")
"""


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["finishes", "raises"])
def test_training_frees_its_ddp_wrapper_before_leaving_the_process_group(store, tmp_path, toy_distribution, ending):
    # A DDP wrapper lives in a reference cycle; left to the collector it outlives the process group and
    # can die at interpreter exit, where gloo's threads abort the process.
    overrides = small_run(store, "train.steps=2", *(["model.rollout.name=toy_nan", "model.rollout.after=1"]
                                                 if ending == "raises" else []))
    procs = ranks(str(QUICKSTART), str(tmp_path / "run"), *overrides, script=LEFT_BEHIND,
                  env={"PYTHONPATH": toy_distribution}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert [out for out, _ in outputs] == ["0 DDP left\n"] * 2, outputs
