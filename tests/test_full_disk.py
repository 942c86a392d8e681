"""A full disk, on a file system made small for the test: one line naming the file that could not
be written and what is intact, and a rerun, once there is room, that goes on without a hand edit."""

import subprocess

import pytest
from helpers import QUICKSTART, losses, prakit, small_run

from prakit.config import load_config
from prakit.data.store import is_finished, open_store
from prakit.errors import DiskFullError
from prakit.sampling import sample_run
from prakit.training.loop import train
from prakit.training.metrics import MetricsLog, read_metrics


@pytest.fixture
def small_disk(tmp_path):
    """``resize(size)``: a tmpfs of ``size`` (e.g. "1500k") mounted at tmp_path/disk, resized when
    called again; skipped where this user cannot mount one."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = []

    def resize(size):
        options = f"{'remount,' if mounted else ''}size={size}"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a small file system for the test: {done.stderr.strip()}")
        mounted.append(size)
        return disk

    yield resize
    if mounted:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.slow
def test_a_full_disk_during_training_is_one_line_and_the_rerun_resumes_with_identical_losses(store, tmp_path,
                                                                                             small_disk):
    args = ["train", str(QUICKSTART), *small_run(store, "train.steps=12", "train.ckpt_every=2", "train.keep_last=1")]
    whole = prakit(*args, "--run-dir", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    run = small_disk("1500k") / "run"  # room for one checkpoint, not two
    full = prakit(*args, "--run-dir", str(run))
    error = full.stderr.splitlines()[-1]  # after the progress lines
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert error.startswith(f"prakit: error: no space left to write {run}/checkpoints/ckpt-00000004.pt")
    assert error.endswith(": free some space, then run the same command again; ckpt-00000002.pt is intact, "
                          "and the run resumes from it")
    small_disk("8m")
    resumed = prakit(*args, "--run-dir", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert losses(run) == losses(tmp_path / "whole")


def test_a_metrics_row_cut_short_by_a_full_disk_is_said_and_dropped_when_the_run_resumes(small_disk):
    disk = small_disk("64k")
    log = MetricsLog(disk / "metrics.jsonl", 0)
    (disk / "filler").write_bytes(b"\0" * (60 * 1024 - 1))  # leaves under a page free
    row = {"step": 0, "loss": 1.0, "padding": 1.0}
    with pytest.raises(DiskFullError, match=rf"^no space left to write {disk / 'metrics.jsonl'} \(the device is full"):
        for step in range(10_000):
            log.write({**row, "step": step})
    (disk / "filler").unlink()
    with pytest.warns(UserWarning, match=r"skipping line \d+, which cannot be read \(cut short by a killed job or a full"):
        written = [r["step"] for r in read_metrics(disk / "metrics.jsonl")]
        MetricsLog(disk / "metrics.jsonl", len(written))  # resumes after the last good row
    assert [r["step"] for r in read_metrics(disk / "metrics.jsonl")] == written == list(range(len(written)))


def test_a_full_disk_while_sampling_keeps_what_was_drawn_and_the_rerun_draws_the_rest(store, tmp_path, small_disk):
    run = tmp_path / "run"
    train(load_config(QUICKSTART, small_run(store, "train.steps=2")), run, progress=False)
    whole = sample_run(run, tmp_path / "whole.zarr", num=256, progress=False)
    out = small_disk("40k") / "samples.zarr"
    with pytest.raises(DiskFullError, match=rf"^no space left to write {out} \(the device is full, or the disk quota "
                                            r"used up\): free some space, then "
                                            "run the same command again; the samples written before are kept"):
        sample_run(run, out, num=256, progress=False)
    assert not is_finished(out)
    small_disk("4m")
    sample_run(run, out, num=256, progress=False)
    assert open_store(out).attrs["fingerprint"] == open_store(whole).attrs["fingerprint"]
