"""How far a run's stages have got, as `prakit sweep status` shows it."""

import json

import numpy as np
import pytest
from helpers import QUICKSTART, small_run

from prakit.config import load_config
from prakit.progress import format_duration, sampling_progress, stage_progress, training_progress


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
