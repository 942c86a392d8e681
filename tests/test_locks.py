"""One writer at a time: a second train of a run, sampling of a store's shard or evaluation into a
folder is refused with the holder named, and a holder that dies leaves no lock behind."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from helpers import QUICKSTART, await_checkpoint, losses, prakit, small_run

from prakit.cli import main
from prakit.config import load_config
from prakit.data.samples import writer_lock
from prakit.locks import LockedError, exclusive
from prakit.training.loop import train

HOLD = """
import sys, time
from pathlib import Path
from prakit.locks import exclusive
with exclusive(Path(sys.argv[1]), "the thing"):
    print("held", flush=True)
    time.sleep(600)
"""


def hold(lock):
    """A process holding ``lock``, once it says so."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_leaves_no_lock(tmp_path):
    lock = tmp_path / "run" / ".train.lock"
    holder = hold(lock)
    try:
        with pytest.raises(LockedError, match=rf"^the thing is being written by pid {holder.pid} on \S+ \(`-c "
                                              rf".*`, since .*\): wait for it to end, or stop it"):
            with exclusive(lock, "the thing"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with exclusive(lock, "the thing"):  # the kernel released the dead holder's lock
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def start_training(args):
    return subprocess.Popen([sys.executable, "-m", "prakit", *args], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_a_second_train_of_a_run_is_refused_while_the_first_runs_and_a_killed_first_blocks_nothing(store, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(QUICKSTART), *small_run(store, "train.steps=100000"), "--run-dir", str(run)]
    first = start_training(args)
    try:
        await_checkpoint(run, timeout=120)
        second = prakit(*args, timeout=120)  # without the lock, it would train beside the first
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
        assert f"prakit: error: run {run} is being written by pid {first.pid} on " in second.stderr
    finally:
        kill(first)
    steps = [step for step, _ in losses(run)]
    assert steps == list(range(len(steps)))  # the refused train wrote nothing in between
    after = start_training(args)
    try:
        assert after.stderr.readline().startswith(f"prakit: resuming {run} from ckpt-")
    finally:
        kill(after)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    train(load_config(QUICKSTART, small_run(store, "train.steps=2")), run, progress=False)
    return run


def test_sampling_a_shard_of_a_store_that_another_process_fills_is_refused(trained, tmp_path, capsys):
    out = tmp_path / "samples.zarr"
    holder = hold(writer_lock(out, 0, 1))
    try:
        assert main(["sample", str(trained), "--num", "4", "--out", str(out)]) == 2
    finally:
        kill(holder)
    assert capsys.readouterr().err.startswith(f"prakit: error: sample store {out} (shard 0 of 1) is being written "
                                              f"by pid {holder.pid}")
    assert not out.exists()


def test_an_evaluation_into_a_folder_another_process_evaluates_into_is_refused(trained, capsys):
    holder = hold(trained / ".eval.lock")
    try:
        assert main(["eval", str(trained), "--num", "4", "--evaluators", "fid"]) == 2
    finally:
        kill(holder)
    assert capsys.readouterr().err.endswith(f"prakit: error: the evaluation in {trained} is being written by pid "
                                            f"{holder.pid} on {socket.gethostname()} (`-c {trained / '.eval.lock'}`, "
                                            f"since {json.loads((trained / '.eval.lock').read_text())['since']}): "
                                            "wait for it to end, or stop it (a second writer would interleave their "
                                            "files)\n")
    assert not (trained / "eval.json").exists()
