"""``prakit sweep``: grids, run names, the manifest, and reruns that submit only what is left."""

import json
import re
import subprocess
from pathlib import Path

import pytest
from helpers import QUICK_EVAL, job_args, prakit
from hypothesis import given
from hypothesis import strategies as st

from prakit.config.io import split_top_level
from prakit.errors import PrakitError
from prakit.sweep import Definition, Sweep, parse_grid
from prakit.sweep.definition import short_labels

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "experiments" / "quickstart.toml")
DIGITS = [str(ROOT / "experiments" / "digits" / f"{name}.toml") for name in ("pra", "pixel-ar")]


def test_a_grid_is_split_at_its_top_level_commas():
    assert parse_grid("model.decoder.state_dim=8,16,32") == ("model.decoder.state_dim", ("8", "16", "32"))
    assert parse_grid("optim.betas=[0.9,0.95],[0.9,0.99]") == ("optim.betas", ("[0.9,0.95]", "[0.9,0.99]"))
    assert parse_grid('model.rollout={name="pra",sigma_max=0.5},{name="teacher_forcing"}')[1] == (
        '{name="pra",sigma_max=0.5}', '{name="teacher_forcing"}')
    assert parse_grid('data.store="a,b","c"')[1] == ('"a,b"', '"c"')


@pytest.mark.parametrize("text, message", [
    ("model.rollout.name", "must look like section.key=value1,value2"),
    ("=1,2", "must look like section.key=value1,value2"),
    ("train.steps=1,,2", "must look like section.key=value1,value2"),
    ("train.steps=1,1", "names a value twice"),
])
def test_a_bad_grid_is_a_clear_error(text, message):
    with pytest.raises(PrakitError, match=message):
        parse_grid(text)


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=6, unique=True))
def test_split_top_level_inverts_joining_values(values):
    texts = [f"[{v},{v + 1}]" if v % 2 else str(v) for v in values]
    assert split_top_level(",".join(texts)) == texts


def test_labels_are_the_shortest_suffixes_that_tell_keys_apart():
    assert short_labels(["model.rollout.name", "model.decoder.state_dim"]) == ["rollout", "state_dim"]
    assert short_labels(["model.decoder.width", "model.backbone.width"]) == ["decoder.width", "backbone.width"]
    with pytest.raises(PrakitError, match="names a key twice"):
        short_labels(["train.steps", "train.steps"])


def test_members_are_the_product_of_configs_grid_and_seeds_named_by_what_sets_them_apart():
    grid = (parse_grid("model.rollout.name=teacher_forcing,pra"), parse_grid("model.decoder.state_dim=8,16"))
    members = Definition((QUICKSTART,), ("train.steps=5",), grid, seeds=2).members()
    assert [m.name for m in members][:3] == ["rollout=teacher_forcing,state_dim=8,seed=0",
                                             "rollout=teacher_forcing,state_dim=8,seed=1",
                                             "rollout=teacher_forcing,state_dim=16,seed=0"]
    assert len(members) == 8 and len({m.name for m in members}) == 8
    assert members[-1].overrides == ("train.steps=5", "model.rollout.name=pra", "model.decoder.state_dim=16",
                                     "train.seed=1")
    several = Definition(tuple(DIGITS), seeds=2).members()
    assert [m.name for m in several] == ["pra,seed=0", "pra,seed=1", "pixel-ar,seed=0", "pixel-ar,seed=1"]
    assert [m.name for m in Definition((QUICKSTART,)).members()] == ["quickstart"]


def test_configs_that_share_a_name_are_refused():
    with pytest.raises(PrakitError, match="share a file name"):
        Definition((QUICKSTART, str(ROOT / "experiments" / "quickstart.toml"))).members()


def test_a_folder_holding_another_sweep_is_refused_and_the_same_sweep_is_reopened(tmp_path):
    first = Definition((QUICKSTART,), grid=(parse_grid("train.steps=1,2"),))
    sweep = Sweep.create(tmp_path, first, {"stages": ["train"]})
    sweep.save()
    assert json.loads((tmp_path / "sweep.json").read_text())["runs"].keys() == {"steps=1", "steps=2"}
    assert Sweep.create(tmp_path, first, {"stages": ["train", "eval"]}).data["settings"]["stages"] == ["train", "eval"]
    with pytest.raises(PrakitError, match=r"holds another sweep \(quickstart.toml; train.steps=1,2\)"):
        Sweep.create(tmp_path, Definition((QUICKSTART,), grid=(parse_grid("train.steps=1,3"),)), {})


def test_a_folder_without_a_manifest_is_not_a_sweep(tmp_path):
    with pytest.raises(PrakitError, match="is not a sweep"):
        Sweep.open(tmp_path)


@pytest.mark.slow
def test_a_debug_sweep_runs_every_stage_here_and_a_rerun_submits_nothing(store, tmp_path):
    out = tmp_path / "sweep"
    command = ["sweep", QUICKSTART, *job_args(store, tmp_path, "train.steps=2", *QUICK_EVAL),
               "--grid", "model.rollout.name=teacher_forcing,pra", "--then", "sample,eval", "--num", "10",
               "--cluster", "debug", "--out", str(out)]
    first = prakit(*command)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 runs, 2 jobs submitted" in first.stdout
    for run in ("rollout=teacher_forcing", "rollout=pra"):
        assert json.loads((out / run / "eval.json").read_text())["sampling"]["num"] == 10
    status = prakit("sweep", "status", str(out))
    *lines, summary = status.stdout.splitlines()
    assert status.returncode == 0 and len(lines) == 6 and summary == "6 of 6 stages completed"
    assert all(" COMPLETED  job " in line for line in lines), status.stdout
    again = prakit(*command)
    assert "0 jobs submitted (every stage is done, queued or running)" in again.stdout, again.stdout + again.stderr
    assert "warning" not in again.stderr, again.stderr  # no empty submission


@pytest.mark.slow
def test_a_local_run_that_fails_shows_its_error_and_its_later_stages_as_not_run(store, tmp_path, toy_distribution):
    out, env = tmp_path / "sweep", {"PYTHONPATH": toy_distribution}
    swept = prakit("sweep", QUICKSTART, *job_args(store, tmp_path), "--grid", "model.rollout.name=pra,toy_nan",
                   "--then", "sample", "--num", "4", "--cluster", "local", "--out", str(out), "--wait", env=env)
    assert swept.returncode == 1, swept.stdout + swept.stderr
    assert re.search(r"^\d\d:\d\d:\d\d \d of 4 stages completed", swept.stdout, re.M), swept.stdout  # while waiting
    status = prakit("sweep", "status", str(out), env=env)
    lines = status.stdout.splitlines()
    assert status.returncode == 1 and [line.split()[:3] for line in lines[:3]] == [
        ["rollout=pra", "train", "COMPLETED"], ["rollout=pra", "sample", "COMPLETED"],
        ["rollout=toy_nan", "train", "FAILED"]], status.stdout
    assert "NonFiniteLossError: non-finite loss at step 0" in lines[3] and lines[4].strip().startswith("log: ")
    assert lines[5].split()[:4] == ["rollout=toy_nan", "sample", "NOT", "RUN"]
    assert lines[6:] == ["2 of 4 stages completed"]


@pytest.mark.slow
def test_a_local_sweep_runs_its_runs_in_lanes_one_after_another_past_a_failure(store, tmp_path, toy_distribution,
                                                                            toy_plugin):
    import os
    import time

    from prakit.sweep import stage_states

    out, env = tmp_path / "sweep", {"PYTHONPATH": toy_distribution}
    one_lane = f"launch.cpus_per_task={os.cpu_count()}"
    printed = tmp_path / "printed.txt"
    with printed.open("w") as f:  # not a pipe: the job, a child, would hold it open until it ends
        swept = prakit("sweep", QUICKSTART, *job_args(store, tmp_path, one_lane, "train.steps=150"),
                       "--grid", "model.rollout.name=pra,toy_nan,teacher_forcing", "--cluster", "local",
                       "--out", str(out), env=env, capture_output=False, stdout=f, stderr=subprocess.STDOUT)
    assert swept.returncode == 0 and "3 runs, 3 jobs submitted" in printed.read_text(), printed.read_text()
    sweep = Sweep.open(out)
    assert len({j["job_id"] for j in sweep.data["jobs"]}) == 1  # one lane: one process
    seen, deadline = [], time.time() + 300
    while time.time() < deadline:
        states = [row["state"] for row in stage_states(sweep, ["train"])]
        if not seen or states != seen[-1]:
            seen.append(states)
        if "RUNNING" not in states and "PENDING" not in states:
            break
        time.sleep(0.2)
    assert ["RUNNING", "PENDING", "PENDING"] in seen, seen  # the others wait their turn
    assert seen[-1] == ["COMPLETED", "FAILED", "COMPLETED"], seen  # the lane went on past the failure
    status = prakit("sweep", "status", str(out), env=env)
    assert "rollout=toy_nan: " in status.stdout and "NonFiniteLossError" in status.stdout, status.stdout
