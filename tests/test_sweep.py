"""``prakit sweep``: grids, run names, the manifest, and reruns that submit only what is left."""

import json
import pickle
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from helpers import QUICK_EVAL, job_args, prakit
from hypothesis import given
from hypothesis import strategies as st

from prakit.cli import main
from prakit.config import load_config
from prakit.config.io import split_top_level
from prakit.errors import PrakitError
from prakit.io import DamagedFileError
from prakit.run import Run
from prakit.stages import LANE_FILE
from prakit.sweep import Definition, Sweep, parse_grid, submit_sweep
from prakit.sweep.definition import short_labels
from prakit.sweep.jobs import error_line, job, job_state, lane_state
from prakit.sweep.manifest import REDO

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
    sweep = Sweep.create(tmp_path, first, {"stages": ["train"], "num": None})
    sweep.save()
    assert json.loads((tmp_path / "sweep.json").read_text())["runs"].keys() == {"steps=1", "steps=2"}
    again = Sweep.create(tmp_path, first, {"stages": ["train", "eval"], "num": None})
    assert again.data["settings"]["stages"] == ["train", "eval"]
    with pytest.raises(PrakitError, match=r"holds another sweep \(quickstart.toml; train.steps=1,2\)"):
        Sweep.create(tmp_path, Definition((QUICKSTART,), grid=(parse_grid("train.steps=1,3"),)), {})


def test_the_same_configs_named_in_another_order_reopen_the_sweep(tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(f'extends = "{QUICKSTART}"\n')
    settings = {"stages": ["train"], "num": None}
    Sweep.create(tmp_path / "sweep", Definition((QUICKSTART, str(other)), seeds=2), settings).save()
    again = Sweep.create(tmp_path / "sweep", Definition((str(other), QUICKSTART), seeds=2), settings)
    assert len(again.data["runs"]) == 4


def test_a_folder_without_a_manifest_is_not_a_sweep(tmp_path):
    with pytest.raises(PrakitError, match="is not a sweep"):
        Sweep.open(tmp_path)


def test_seeds_given_twice_are_refused_not_overridden():
    """``--seeds`` used to override the grid's ``train.seed`` silently: every run trained with seed 0."""
    for definition in (Definition((QUICKSTART,), grid=(parse_grid("train.seed=1,2"),), seeds=2),
                       Definition((QUICKSTART,), ("train.seed=4",), seeds=2)):
        with pytest.raises(PrakitError, match=r"--seeds sets train.seed \(0..1\) and so does"):
            definition.members()
    grid_only = Definition((QUICKSTART,), grid=(parse_grid("train.seed=1,2"),)).members()
    assert [m.overrides for m in grid_only] == [("train.seed=1",), ("train.seed=2",)]


def damaged(manifest: dict, damage: str) -> bytes:
    """``manifest`` (a sweep with one job) as ``damage`` leaves it."""
    if damage in ("", "\xff{}", "[1]"):
        return damage.encode("latin-1")
    part, _, key = damage.rpartition(".")
    target = manifest
    for step in filter(None, part.split("/")):
        target = target[int(step)] if step.isdigit() else target[step]
    if key == "<string>":
        manifest["jobs"][0] = "4242"
    elif key == "<stage>":
        target["stages"] = ["train", "evaluate"]
    elif key == "<empty>":
        target.clear()
    else:
        del target[key]
    return json.dumps(manifest).encode()


@pytest.mark.parametrize("damage, problem", [
    ("", "empty"),
    ("\xff{}", "not UTF-8 text (byte 0)"),
    ("[1]", "its content is a list where an object belongs"),
    (".settings", "settings is missing"),
    (".runs", "runs is missing"),
    (".jobs", "jobs is missing"),
    (".definition", "definition is missing"),
    ("definition.grid", "definition.grid is missing"),
    ("settings.<stage>", "settings.stages names 'evaluate', not a stage"),
    ("runs/steps=1.config", "runs['steps=1'].config is missing"),
    ("jobs/0.job_id", "jobs[0].job_id is missing"),
    ("jobs/0.<string>", "jobs[0] is a string where an object belongs"),
    ("runs.<empty>", "runs is empty"),
])
def test_a_damaged_manifest_is_one_line_naming_it_the_damage_and_the_fix(tmp_path, damage, problem):
    sweep = Sweep.create(tmp_path, Definition((QUICKSTART,), grid=(parse_grid("train.steps=1,2"),)),
                         {"stages": ["train"], "num": None})
    sweep.record("steps=1", "train", "4242", str(tmp_path / "%j"), "slurm", submission=1)
    (tmp_path / "sweep.json").write_bytes(damaged(sweep.data, damage))
    with pytest.raises(DamagedFileError) as caught:
        Sweep.open(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'sweep.json'} is damaged: {problem}; {REDO}"


def test_every_sweep_command_reports_a_damaged_manifest_in_one_line(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text('{"definition": {"configs": []}}')
    for command in (["status", str(tmp_path)], ["collect", str(tmp_path)], ["cancel", str(tmp_path)],
                    [QUICKSTART, "--out", str(tmp_path)]):
        assert main(["sweep", *command]) == 2
        said = capsys.readouterr().err
        assert said == f"prakit: error: {tmp_path / 'sweep.json'} is damaged: definition.overrides is missing; {REDO}\n"


@pytest.mark.parametrize("content", [b"", b"garbage", pickle.dumps(["success"]), pickle.dumps(("done", None))])
def test_a_damaged_job_result_is_named_with_its_fix(tmp_path, content):
    record = {"cluster": "local", "job_id": "999999999", "folder": str(tmp_path / "%j")}
    result = job(record).paths.result_pickle
    result.parent.mkdir(parents=True)
    result.write_bytes(content)
    with pytest.raises(DamagedFileError, match=rf"{result.name} is damaged: not a job's result; delete it and rerun"):
        job_state(record)
    result.write_bytes(pickle.dumps(("error", "Traceback\nValueError: the real error")))
    assert (job_state(record), error_line(record)) == ("FAILED", "ValueError: the real error")


def test_a_job_result_holding_a_class_that_moved_since_still_tells_the_outcome(tmp_path, monkeypatch):
    record = {"cluster": "local", "job_id": "999999999", "folder": str(tmp_path / "%j")}
    result = job(record).paths.result_pickle
    result.parent.mkdir(parents=True)
    gone = types.ModuleType("prakit_module_moved_since")
    gone.Returned = type("Returned", (), {"__module__": gone.__name__})
    monkeypatch.setitem(sys.modules, gone.__name__, gone)
    result.write_bytes(pickle.dumps(("success", gone.Returned())))
    monkeypatch.delitem(sys.modules, gone.__name__)
    assert job_state(record) == "COMPLETED"


def test_a_damaged_lane_record_is_named_with_its_fix(tmp_path):
    record = {"cluster": "local", "job_id": "4242", "folder": str(tmp_path / "%j")}
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / LANE_FILE).write_text('{"current": null}')
    with pytest.raises(DamagedFileError, match=rf"{LANE_FILE} is damaged: failed is missing; the lane job writes"):
        lane_state(record, tmp_path / "run")
    (tmp_path / "4242" / LANE_FILE).write_text(json.dumps({"current": str(tmp_path / "run"), "failed": []}))
    assert lane_state(record, tmp_path / "run") == {"state": "RUNNING"}


def test_bad_arguments_are_refused_before_anything_is_made(store, tmp_path):
    """``--num 0`` trained every run before its sampling failed."""
    for flags, message in ((["--then", "sample", "--num", "0"], "--num must be at least 1, got 0"),
                           (["--grid", "train.seed=1,2", "--seeds", "2"], "--seeds sets train.seed"),
                           (["--then", "sampel"], "unknown stage 'sampel'")):
        refused = prakit("sweep", QUICKSTART, *job_args(store, tmp_path), *flags, "--cluster", "debug",
                         "--out", str(tmp_path / "sweep"))
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert not (tmp_path / "sweep").exists()


def test_a_sweep_does_not_take_over_a_run_of_another_config(store, tmp_path):
    """A folder left without sweep.json (a submission that failed, once) held run directories that
    another sweep then took for its own."""
    definition = Definition((QUICKSTART,), tuple(job_args(store, tmp_path)), (parse_grid("train.seed=1,2"),))
    Run(tmp_path / "sweep" / "seed=1").save_config(load_config(QUICKSTART, job_args(store, tmp_path, "train.seed=3")))
    sweep = Sweep.create(tmp_path / "sweep", definition, {"stages": ["train"], "num": None})
    with pytest.raises(PrakitError, match=r"seed=1 holds a run of another config than this sweep's \(differs in: "
                                          r"train.seed\); move it away or choose another --out"):
        submit_sweep(sweep, cluster="debug")
    assert not (tmp_path / "sweep" / "sweep.json").exists() and not (tmp_path / "sweep" / "seed=2").exists()


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
