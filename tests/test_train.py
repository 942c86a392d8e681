"""The training job end to end: real subprocesses, real SIGKILL, real gloo DDP, real stores."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prakit.config import load_config
from prakit.train.loop import NonFiniteLossError, RunDirectoryError, train
from prakit.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.toml"
SMALL_RUN = [
    "data.image_size=8", "data.num_workers=0", "model.patch_size=4",
    "train.batch_size=16", "train.log_every=1", "train.ckpt_every=4", "train.sample_every=0",
    "sample.steps=3", "sample.batch_size=4",
]
SMALL_MODEL = [
    "model.backbone.width=32", "model.backbone.depth=2", "model.backbone.heads=2",
    "model.generator.width=32", "model.generator.depth=2", "model.decoder.width=32",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The digits dataset at 8x8, prepared once for this module."""
    from prakit import registry
    from prakit.data import prepare

    path = tmp_path_factory.mktemp("data") / "digits-8.zarr"
    prepare(registry.get("dataset").config("digits"), path, size=8, progress=False)
    return path


def tiny(store, *extra, model=SMALL_MODEL):
    return [*SMALL_RUN, *model, f"data.store={json.dumps(str(store))}", *extra]


def prakit(*args, env=None, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "prakit", *args], capture_output=True, text=True, env=env, **kw)


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


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(row["step"], row["loss"]) for row in read_metrics(run_dir / "metrics.jsonl")]


def test_a_killed_run_resumes_with_identical_losses(store, tmp_path):
    args = ["train", str(QUICKSTART), *tiny(store, "train.steps=16")]
    whole = prakit(*args, "--run-dir", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    reference = losses(tmp_path / "whole")
    assert [s for s, _ in reference] == list(range(16))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "prakit", *args, "--run-dir", str(killed_dir)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((killed_dir / "checkpoints").glob("ckpt-00000008*.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list((killed_dir / "checkpoints").glob("ckpt-00000008*.pt")), "no checkpoint before the kill"
    resumed = prakit(*args, "--run-dir", str(killed_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert losses(killed_dir) == reference  # bit for bit, each step logged once


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(store, tmp_path, toy_distribution):
    # Deterministic components (toy plugin): the loss depends only on the batch and the weights.
    deterministic = ["model.backbone.name=toy", "model.generator.name=toy", "model.decoder.name=toy",
                     "model.rollout.name=teacher_forcing", "model.class_dropout=0.0", "train.steps=6"]
    args = ["train", str(QUICKSTART), *tiny(store, *deterministic, model=())]
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


def test_a_non_finite_loss_on_one_rank_stops_every_rank(store, tmp_path, toy_distribution):
    # Two ranks started by hand, not by torchrun: torchrun kills the other ranks as soon as one
    # fails, and this test checks that each rank stops by itself, with its own message.
    nan_on_rank_1 = ["model.backbone.name=toy", "model.generator.name=toy", "model.decoder.name=toy",
                     "model.rollout.name=toy_nan", "model.rollout.after=3", "model.rollout.rank=1", "train.steps=6"]
    args = ["train", str(QUICKSTART), *tiny(store, *nan_on_rank_1, model=()), "--run-dir", str(tmp_path / "run")]
    group = {"PYTHONPATH": toy_distribution, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2",
             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    ranks = [subprocess.Popen([sys.executable, "-m", "prakit", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, **group, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in range(2)]
    stderr = [rank.communicate(timeout=300)[1] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [2, 2], stderr
    assert "non-finite loss at step 3 on rank 0 of 2: another rank's loss went non-finite" in stderr[0]
    assert "non-finite loss at step 3 on rank 1 of 2: the first non-finite output came from rollout" in stderr[1]


def test_a_non_finite_loss_stops_with_the_step_and_the_component(store, tmp_path, toy_plugin):
    cfg = load_config(QUICKSTART, tiny(store, "model.rollout.name=toy_nan", "model.rollout.after=5",
                                       "train.steps=10"))
    with pytest.raises(NonFiniteLossError) as excinfo:
        train(cfg, tmp_path / "run", progress=False)
    message = str(excinfo.value)
    assert message.startswith("non-finite loss at step 5: the first non-finite output came from rollout")
    assert "model.rollout = 'toy_nan'" in message
    assert "ckpt-00000004.pt" in message and Path(message.rsplit(" ", 1)[-1]).exists()


def test_a_run_directory_of_another_config_is_refused_unless_forced(store, tmp_path):
    cfg = load_config(QUICKSTART, tiny(store, "train.steps=1"))
    train(cfg, tmp_path / "run", progress=False)
    other = load_config(QUICKSTART, tiny(store, "train.steps=1", "optim.lr=0.01"))
    with pytest.raises(RunDirectoryError, match=r"differs in: optim.lr\); choose another --run-dir"):
        train(other, tmp_path / "run", progress=False)
    longer = load_config(QUICKSTART, tiny(store, "train.steps=2"))  # a longer run is the same run
    assert train(longer, tmp_path / "run", progress=False).step == 2
    train(other, tmp_path / "run", force=True, resume=False, progress=False)


def test_a_mismatched_checkpoint_is_a_clear_error_and_is_kept(store, tmp_path):
    import torch

    from prakit.config import unstructure
    from prakit.sample import load_model
    from prakit.train.checkpoint import CheckpointError, load_checkpoint

    cfg = load_config(QUICKSTART, tiny(store, "train.steps=1"))
    first = train(cfg, tmp_path / "run", progress=False)
    wider = load_config(QUICKSTART, tiny(store, "train.steps=1", "model.backbone.width=48"))
    with pytest.raises(CheckpointError, match=r"ckpt-00000001.pt was written by a different config "
                                              r"\(differs in: model.backbone.width\); pass --no-resume"):
        train(wider, tmp_path / "run", force=True, progress=False)
    assert first.checkpoint.exists()
    assert train(cfg, tmp_path / "run", progress=False).step == 1  # the run directory is still the first run's
    # weights that do not fit the config stored beside them
    state = load_checkpoint(first.checkpoint)
    state["config"] = json.dumps(unstructure(wider))
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match=r"edited.pt does not fit the model its config builds \(Error"):
        load_model(tmp_path / "edited.pt", "none", torch.device("cpu"))


def test_sampling_is_identical_across_batch_sizes_and_resumed_runs(store, tmp_path):
    from prakit.data import SampleStore, open_store
    from prakit.sample import sample_run

    cfg = load_config(QUICKSTART, tiny(store, "train.steps=4"))
    run = train(cfg, tmp_path / "run", progress=False).run_dir
    whole = sample_run(run, tmp_path / "a.zarr", num=6, overrides={"batch_size": 6}, progress=False)
    small = sample_run(run, tmp_path / "b.zarr", num=6, overrides={"batch_size": 4}, progress=False)
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
    # other options never add to that store, unless told to start over
    other = prakit("sample", str(run), "--num", "6", "--out", str(cut), "--cfg", "7")
    assert other.returncode == 2 and "another sampling" in other.stderr and "--restart" in other.stderr
    redone = prakit("sample", str(run), "--num", "6", "--out", str(cut), "--cfg", "7", "--restart")
    assert redone.returncode == 0, redone.stderr
    assert open_store(cut).attrs["sampling"]["cfg_scale"] == 7
