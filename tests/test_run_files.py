"""A run's own files read back when they are damaged, cut short or edited: one line naming the
file and the way out, never a traceback, and never the loss of what is still good."""

import json
import shutil

import attrs
import pytest
import torch
from helpers import QUICKSTART, eval_record, losses, small_run

from prakit.cli import main
from prakit.config import load_config, save_config
from prakit.io import DamagedFileError
from prakit.run import EVAL_RECORD, Run
from prakit.tracking import remembered_id
from prakit.training.checkpoint import (
    CheckpointError,
    MisnamedCheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from prakit.training.loop import train
from prakit.training.metrics import read_metrics


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    """A micro run trained for 4 steps (a checkpoint at 4), copied by each test that changes it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(load_config(QUICKSTART, small_run(store, "train.steps=4")), run, progress=False)
    return run


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def continue_training(store, run, steps=6):
    return train(load_config(QUICKSTART, small_run(store, f"train.steps={steps}")), run, progress=False)


# -- metrics.jsonl ------------------------------------------------------------------------------


def test_a_metrics_line_cut_short_is_dropped_on_resume_and_every_good_row_kept(store, run):
    metrics = run / "metrics.jsonl"
    good = metrics.read_text()
    metrics.write_text(good + '{"step": 4, "loss": 0.5, "he')  # a job killed mid-write
    with pytest.warns(UserWarning, match=r"metrics.jsonl: skipping line 5, which cannot be read .*other 4 rows"):
        continue_training(store, run)
    assert [step for step, _ in losses(run)] == list(range(6))
    assert metrics.read_text().startswith(good)


@pytest.mark.parametrize("damage", [b"\xff\xfe\x00garbage", b"[1, 2]", b'{"step": -3, "loss": 1.0}',
                                    b'{"step": "7", "loss": 1.0}', b'{"loss": 2.0}', b'{"step": 2, "loss": "low"}'])
def test_read_metrics_skips_what_is_not_a_row_and_names_its_line(tmp_path, damage):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 0, "loss": 1.0}\n' + damage + b'\n{"step": 1, "loss": 0.9}\n')
    with pytest.warns(UserWarning, match="skipping line 2,"):
        assert [row["step"] for row in read_metrics(path)] == [0, 1]


# -- eval.json ----------------------------------------------------------------------------------

#: An evaluation record with every field its readers use.
RECORD = eval_record(numbers={"fid": 12.5, "precision": None}, higher_is_better={"fid": False},
                     evaluators=[{"name": "fid", "config": {"name": "fid"}, "numbers": {"fid": 12.5}, "curves": {}}])



@pytest.mark.parametrize("content, problem", [
    (b"", "empty"),
    (b"\x80abc", "not UTF-8 text (byte 0)"),
    (b"[]", "its content is a list where an object belongs"),
    ({"reference": ...}, "reference is missing"),
    ({"numbers": {"fid": "low"}}, "numbers.fid is a string where a number or null belongs"),
    ({"reference": {"kind": "store"}}, "reference.path is missing"),
    ({"sampling": {"num": 4, "ema": "slow", "cfg_scale": "3"}}, "sampling.cfg_scale is a string where a number belongs"),
    ({"evaluators": [{"name": "fid"}]}, "evaluators[0].config is missing"),
    ({"samples": {"count": 4.5}}, "samples.count is a number where an integer belongs"),
])
def test_compare_of_a_damaged_eval_record_is_one_line_naming_it(run, capsys, content, problem):
    if isinstance(content, dict):  # a record as `prakit eval` writes one, edited
        content = json.dumps({key: value for key, value in {**RECORD, **content}.items() if value is not ...}).encode()
    (run / EVAL_RECORD).write_bytes(content)
    assert main(["compare", str(run)]) == 2
    err = capsys.readouterr().err
    assert err == (f"prakit: error: {run / EVAL_RECORD} is damaged: {problem}; delete it and run the evaluation "
                   "that wrote it again (`prakit eval`)\n")


# -- checkpoints --------------------------------------------------------------------------------


def state(step, **extra):
    return {"step": step, "model": {"w": torch.zeros(2)}, "config": "{}", **extra}


@pytest.mark.parametrize("step, said", [(-42, "-42"), ("12", "'12'"), (3.5, "3.5"), (True, "True")])
def test_a_checkpoint_whose_step_is_not_a_whole_number_at_least_0_is_refused(tmp_path, step, said):
    path = tmp_path / "weights.pt"
    torch.save(state(step), path)
    with pytest.raises(CheckpointError, match=rf"weights.pt holds step {said}, not a whole number at least 0"):
        load_checkpoint(path)


def test_a_checkpoint_whose_config_or_weights_are_unreadable_is_refused(tmp_path):
    torch.save(state(1, config="{not json"), tmp_path / "a.pt")
    torch.save({**state(1), "model": [1, 2]}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="a.pt holds no readable config"):
        load_checkpoint(tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="b.pt holds a list where the model's weights belong"):
        load_checkpoint(tmp_path / "b.pt")


def test_a_checkpoint_named_for_another_step_is_refused_not_resumed_and_nothing_rotates_away(tmp_path):
    for step in (1, 2):
        save_checkpoint(tmp_path, step, state(step), keep_last=2)
    torch.save(state(4), tmp_path / "ckpt-00000100.pt")  # a step-4 checkpoint under a later name
    message = r"ckpt-00000100.pt holds step 4 but is named for step 100: rename it ckpt-00000004.pt"
    with pytest.raises(MisnamedCheckpointError, match=message):
        latest_checkpoint(tmp_path)  # not skipped: resuming past it would rotate by the wrong order
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000001.pt", "ckpt-00000002.pt", "ckpt-00000100.pt"]


def test_resuming_from_a_checkpoint_without_the_training_state_is_refused_before_training(store, run):
    (checkpoint,) = list_checkpoints(run / "checkpoints")
    weights_only = load_checkpoint(checkpoint)
    del weights_only["optimizer"]
    torch.save(weights_only, checkpoint)
    with pytest.raises(CheckpointError, match=r"ckpt-00000004.pt lacks the training state to resume from "
                                              r"\(optimizer\): it holds weights only; sample from it, or pass --no-resume"):
        continue_training(store, run)
    assert [step for step, _ in losses(run)] == list(range(4))  # nothing trained, nothing rewritten


def test_resuming_with_an_optimizer_state_that_does_not_fit_is_refused(store, run):
    (checkpoint,) = list_checkpoints(run / "checkpoints")
    edited = load_checkpoint(checkpoint)
    edited["optimizer"]["param_groups"] = []
    torch.save(edited, checkpoint)
    with pytest.raises(CheckpointError, match="optimizer or EMA state does not fit the model its config builds"):
        continue_training(store, run)


# -- trackers.json ------------------------------------------------------------------------------


@pytest.mark.parametrize("content, problem", [(b"{", "not JSON"), (b'{"wandb": 7}', "wandb is an integer where an id")])
def test_a_damaged_trackers_record_is_one_line_naming_it(tmp_path, content, problem):
    Run(tmp_path).trackers_record.write_bytes(content)
    with pytest.raises(DamagedFileError, match=f"trackers.json is damaged: {problem}.*delete it to start new tracked"):
        remembered_id(tmp_path, "wandb")


def test_sampling_a_run_whose_newest_checkpoint_another_config_wrote_is_refused(store, run, capsys):
    other = load_config(QUICKSTART, small_run(store, "train.steps=4", "model.backbone.width=48"))
    save_config(other, run / "config.toml")  # as `prakit train` of this config would refuse to resume
    assert main(["sample", str(run), "--num", "2", "--out", str(run / "s.zarr")]) == 2
    assert capsys.readouterr().err == (
        f"prakit: error: {run}/checkpoints/ckpt-00000004.pt was written by another config than {run}/config.toml "
        f"(differs in: model.backbone.width): move it out of {run}/checkpoints, or name the file itself to use it\n")
    assert main(["sample", f"{run}/checkpoints/ckpt-00000004.pt", "--num", "2", "--out", str(run / "s.zarr")]) == 0


def test_a_run_whose_config_omits_a_field_added_since_computes_as_one_that_writes_its_default(tmp_path):
    cfg = load_config(QUICKSTART.parent / "digits" / "exact-rollout.toml")
    run = Run(tmp_path / "run")
    run.save_config(cfg)
    written = run.config_file.read_text()
    assert written.count("\nwarmup = 0\n") == 1  # the exact rollout's, a field added after the first runs
    run.config_file.write_text(written.replace("\nwarmup = 0\n", "\n"))
    assert run.computes_otherwise(cfg) == []
    assert run.computes_otherwise(attrs.evolve(cfg, model=attrs.evolve(cfg.model, rollout=attrs.evolve(
        cfg.model.rollout, warmup=5)))) == ["model.rollout.warmup"]
