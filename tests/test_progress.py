"""How far a job has got: as it goes (a bar on a terminal, plain lines in a log), and as
`prakit sweep status` reads it from a run's files."""

import io
import json
import re

import numpy as np
import pytest
from helpers import QUICKSTART, prakit, small_run

from prakit.config import load_config
from prakit.progress import Progress, format_duration, sampling_progress, stage_progress, training_progress


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (185, "3m05s"), (7620, "2h07m"), (-3, "0s")])
def test_durations_read_like_a_progress_bar(seconds, text):
    assert format_duration(seconds) == text


def test_training_and_sampling_progress_come_from_the_runs_files(store, tmp_path):
    from prakit.data import SampleStore
    from prakit.eval.evaluate import resolve
    from prakit.training.loop import train

    run = tmp_path / "run"
    assert training_progress(run) is None and sampling_progress(run) is None  # nothing there yet
    train(load_config(QUICKSTART, small_run(store, "train.steps=4", "train.log_every=2")), run, progress=False)
    assert training_progress(run) == "step 4 of 4, ETA 0s"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text(json.dumps({**rows[0], "images_per_s": 16.0}) + "\n")  # as after step 2
    assert stage_progress("train", run) == "step 2 of 4, ETA 2s"  # 2 steps of 16 images at 16 images/s
    assert sampling_progress(run, num=6) is None  # sampling has not begun
    target = resolve(run, num=6)
    samples = SampleStore.open(target.samples, num=6, image_shape=(8, 8, 3), attrs={})
    samples.write([0, 1], np.zeros((2, 8, 8, 3), np.uint8), np.zeros(2, np.int64))
    assert stage_progress("sample", run, num=6) == "2 of 6 images" and stage_progress("eval", run) is None


def test_off_a_terminal_progress_is_a_plain_line_every_so_often():
    log = io.StringIO()  # not a terminal, as a SLURM log is not
    bar = Progress("train", 10, initial=3, unit="steps", every=4, stream=log)
    for step in range(4, 11):
        bar.update(1, **({"loss": 0.123456} if step % 4 == 0 else {}))
    bar.close()
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["train: 4 of 10 steps (40%)", "train: 8 of 10 steps (80%)",
                                                      "train: 10 of 10 steps (100%)"]  # on multiples of 4, resumed at 3
    assert re.fullmatch(r"train: 4 of 10 steps \(40%\), loss 0\.1235, [\d.e+]+ steps/s, ETA \d+s", lines[0])
    assert "ETA" not in lines[-1]
    fast = io.StringIO()
    Progress("prepare", 5000, unit="images", stream=fast).update(5000)
    assert re.fullmatch(r"prepare: 5000 of 5000 images \(100%\), \d+ images/s\n", fast.getvalue())  # not 1.2e+06
    quiet = io.StringIO()
    Progress("train", 10, enabled=False, stream=quiet).update(10)
    assert quiet.getvalue() == ""


@pytest.mark.slow
def test_training_and_sampling_log_plain_lines_when_output_is_not_a_terminal(store, tmp_path):
    run = tmp_path / "run"
    trained = prakit("train", str(QUICKSTART), *small_run(store, "train.steps=6", "train.log_every=2"),
                     "--run-dir", str(run))
    assert trained.returncode == 0, trained.stderr
    lines = [line for line in trained.stderr.splitlines() if line.startswith("train: ")]
    assert [line.split(",")[0] for line in lines] == [f"train: {n} of 6 steps ({100 * n // 6}%)" for n in (2, 4, 6)]
    assert re.match(r"train: 2 of 6 steps \(33%\), loss [\d.]+, lr [\d.e-]+, images/s \d+, .*ETA", lines[0])
    sampled = prakit("sample", str(run), "--num", "8", "--out", str(tmp_path / "s.zarr"), "--batch-size", "4")
    assert sampled.returncode == 0, sampled.stderr
    assert re.search(r"^sample: 8 of 8 images \(100%\), [\d.]+ images/s$", sampled.stderr, re.M)
