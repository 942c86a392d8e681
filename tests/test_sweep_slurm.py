"""Sweeps and stage jobs on the real SLURM cluster that ``.ci/slurm.sh`` starts: dependent stages,
status, collect, reruns, requeues, sampling shards, failures, and the code frozen at submission."""

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import QUICK_EVAL, QUICKSTART, ROOT, await_checkpoint, final_states, job_args, losses, prakit

from prakit.config import load_config
from prakit.data.store import open_store
from prakit.eval import resolve
from prakit.launch import ClusterError, submit
from prakit.sampling import sample_run
from prakit.sweep import Definition, Sweep, cancel_sweep, parse_grid, submit_sweep
from prakit.sweep.jobs import NEVER_STARTED, queued_state
from prakit.training.loop import train

pytestmark = pytest.mark.slow


def job_ids(output: str) -> list[str]:
    """The ids of the jobs a submission printed (``job 12_0: sample RUN_DIR, log ...``)."""
    return [line.split()[1][:-1] for line in output.splitlines() if line.startswith("job ") and ":" in line.split()[1]]


def started_after(job_id: str, upstream: str) -> bool:
    """Whether SLURM started ``job_id`` only after ``upstream`` had ended (sacct's times)."""
    def times(job):
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job, "-o", "Start,End"], capture_output=True,
                             text=True).stdout.split()
        return out[-1].split("|")

    return times(job_id)[0] >= times(upstream)[1]


def test_a_sweep_runs_its_stages_as_dependent_jobs_and_a_rerun_submits_nothing(slurm, store, tmp_path):
    out = tmp_path / "sweep"
    command = ["sweep", str(QUICKSTART), *job_args(store, tmp_path, *QUICK_EVAL),
               "--grid", "model.rollout.name=teacher_forcing,pra", "--seeds", "2", "--then", "sample,eval",
               "--num", "20", "--cluster", "slurm", "--out", str(out)]
    first = prakit(*command, "--wait", timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "sweep " in first.stdout and "4 runs, 12 jobs submitted" in first.stdout

    jobs = json.loads((out / "sweep.json").read_text())["jobs"]
    trains = {j["run"]: j["job_id"] for j in jobs if j["stage"] == "train"}
    assert len(trains) == 4 and len({job_id.split("_")[0] for job_id in trains.values()}) == 1  # one array
    for stage, upstream_stage in (("sample", "train"), ("eval", "sample")):
        for job in (j for j in jobs if j["stage"] == stage):
            [upstream] = [j["job_id"] for j in jobs if j["run"] == job["run"] and j["stage"] == upstream_stage]
            script = (Path(job["folder"].replace("%j", job["job_id"])) / f"{job['job_id']}_submission.sh")
            assert f"--dependency=afterok:{upstream}" in script.read_text()
            assert started_after(job["job_id"], upstream)

    status = prakit("sweep", "status", str(out))
    assert status.returncode == 0, status.stdout + status.stderr
    *lines, summary = status.stdout.splitlines()
    assert len(lines) == 12 and all(" COMPLETED  job " in line for line in lines), status.stdout
    assert summary == "12 of 12 stages completed"
    assert {line.split()[0] for line in lines} == {f"rollout={r},seed={s}" for r in ("teacher_forcing", "pra")
                                                  for s in (0, 1)}

    collected = prakit("sweep", "collect", str(out))
    assert collected.returncode == 0, collected.stderr
    rows = [line for line in collected.stdout.splitlines() if "seeds)" in line]
    assert [row.split()[:3] for row in rows] == [["rollout=teacher_forcing", "(2", "seeds)"],
                                                 ["rollout=pra", "(2", "seeds)"]], collected.stdout
    assert all((out / f"comparison.{ext}").is_file() for ext in ("md", "json", "csv"))

    again = prakit(*command)
    assert again.returncode == 0, again.stderr
    assert "0 jobs submitted (every stage is done, queued or running)" in again.stdout


def test_a_run_requeued_mid_training_ends_with_the_uninterrupted_final_loss(slurm, store, tmp_path):
    cfg = load_config(QUICKSTART, job_args(store, tmp_path, "train.steps=200", "train.log_every=10",
                                           "train.ckpt_every=20"))
    whole, requeued = submit([(cfg, tmp_path / "whole"), (cfg, tmp_path / "requeued")], cluster="slurm")
    await_checkpoint(tmp_path / "requeued")
    assert queued_state(requeued.job_id) == "RUNNING"  # the queue, not accounting: sacct can lag it
    subprocess.run(["scontrol", "requeue", requeued.job_id], check=True)
    assert whole.results()[0].step == requeued.results()[0].step == 200
    assert final_states(requeued.job_id)[-1] == "COMPLETED" and "REQUEUED" in final_states(requeued.job_id)
    assert "resum" in requeued.stdout().lower() or "resum" in requeued.stderr().lower()
    assert losses(tmp_path / "requeued")[-1] == losses(tmp_path / "whole")[-1]


def test_three_sampling_shards_fill_one_store_as_one_process_would(slurm, store, tmp_path):
    run_dir = train(load_config(QUICKSTART, job_args(store, tmp_path)), tmp_path / "run", progress=False).run_dir
    done = prakit("submit", "--stage", "sample", str(run_dir), "--num", "10", "--shards", "3", "--cluster", "slurm",
                  "--wait", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(job_ids(done.stdout)) == 3
    target = resolve(run_dir, num=10)
    alone = tmp_path / "alone.zarr"
    sample_run(target.checkpoint, alone, num=10, options=target.options, progress=False)
    sharded, single = open_store(target.samples), open_store(alone)
    assert len(sharded) == len(single) == 10
    images, labels = sharded.read(np.arange(10))
    expected_images, expected_labels = single.read(np.arange(10))
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)


def test_a_failing_run_shows_its_error_in_status_while_the_others_finish(slurm, store, tmp_path, toy_distribution):
    out = tmp_path / "sweep"
    swept = prakit("sweep", str(QUICKSTART), *job_args(store, tmp_path),
                   "--grid", "model.rollout.name=pra,toy_nan", "--then", "sample", "--num", "4", "--cluster", "slurm",
                   "--out", str(out), "--wait",
                   env={"PYTHONPATH": toy_distribution}, timeout=600)
    assert swept.returncode == 1, swept.stdout + swept.stderr
    status = prakit("sweep", "status", str(out), env={"PYTHONPATH": toy_distribution})
    assert status.returncode == 1
    lines = status.stdout.splitlines()
    assert [line.split()[:3] for line in lines[:3]] == [["rollout=pra", "train", "COMPLETED"],
                                                        ["rollout=pra", "sample", "COMPLETED"],
                                                        ["rollout=toy_nan", "train", "FAILED"]], status.stdout
    assert "NonFiniteLossError: non-finite loss at step 0" in lines[3]
    log = Path(lines[4].split("log: ")[1])
    assert log.is_file() and "Traceback" in log.read_text()
    assert lines[5].split()[:3] == ["rollout=toy_nan", "sample", "CANCELLED"]  # by SLURM: its training failed
    assert lines[6].strip() == NEVER_STARTED and lines[7:] == ["2 of 4 stages completed"]


def test_a_job_runs_the_code_it_was_submitted_with(slurm, store, tmp_path):
    """Submitted from a checkout (run elsewhere, so that the working directory is not on the path),
    held, then the checkout is broken, then released: the job runs what was submitted."""
    checkout = tmp_path / "checkout"
    for part in ("prakit", "plugins"):
        shutil.copytree(ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", checkout)
    env = {"PYTHONPATH": os.pathsep.join([str(checkout), str(checkout / "plugins")])}
    held = prakit("submit", str(QUICKSTART), *job_args(store, tmp_path), "--run-dir", str(tmp_path / "run"),
                  "--cluster", "slurm", "--slurm-option", "hold", env=env, cwd=tmp_path)
    assert held.returncode == 0, held.stderr
    [job_id] = job_ids(held.stdout)
    (checkout / "prakit" / "training" / "loop.py").write_text('raise RuntimeError("the checkout changed")\n')
    subprocess.run(["scontrol", "release", job_id], check=True)
    assert final_states(job_id, timeout=300) == ["COMPLETED"]
    assert (tmp_path / "run" / "checkpoints" / "ckpt-00000004.pt").is_file()


def test_a_rerun_never_starts_a_second_copy_of_a_queued_job_and_cancel_stops_them(slurm, store, tmp_path):
    out = tmp_path / "sweep"
    command = ["sweep", str(QUICKSTART), *job_args(store, tmp_path), "--grid", "model.rollout.name=teacher_forcing,pra",
               "--then", "sample", "--cluster", "slurm", "--slurm-option", "hold", "--out", str(out)]
    first = prakit(*command)
    assert first.returncode == 0 and "2 runs, 4 jobs submitted" in first.stdout, first.stdout + first.stderr
    again = prakit(*command)
    assert "2 runs, 0 jobs submitted" in again.stdout, again.stdout + again.stderr
    status = prakit("sweep", "status", str(out))
    assert [line.split()[2] for line in status.stdout.splitlines()[:-1]] == ["PENDING"] * 4, status.stdout
    cancelled = prakit("sweep", "cancel", str(out))
    assert cancelled.returncode == 0 and cancelled.stdout.startswith("cancelled 4 jobs: "), cancelled.stdout
    rows = [line.split() for line in prakit("sweep", "status", str(out)).stdout.splitlines()[:-1] if line[0] != " "]
    assert [row[2] for row in rows] == ["CANCELLED"] * 4
    resubmitted = prakit(*command)
    assert "2 runs, 4 jobs submitted" in resubmitted.stdout  # what was cancelled is submitted again
    prakit("sweep", "cancel", str(out))


def unreachable_controller(tmp_path: Path) -> dict[str, str]:
    """An environment whose SLURM commands look for the controller on a port nothing listens on."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")).read_text()
    (tmp_path / "slurm.conf").write_text(f"SlurmctldPort={port}\nMessageTimeout=1\n{conf}")
    return {"SLURM_CONF": str(tmp_path / "slurm.conf")}


def test_an_unreachable_controller_is_one_line_naming_sbatch(slurm, store, tmp_path):
    env = unreachable_controller(tmp_path)
    for command in (["sweep", "--grid", "train.seed=1,2", "--out", str(tmp_path / "sweep")],
                    ["submit", "--run-dir", str(tmp_path / "run")]):
        refused = prakit(*command, str(QUICKSTART), *job_args(store, tmp_path), "--cluster", "slurm", env=env)
        assert refused.returncode == 2 and refused.stdout == "", refused.stdout + refused.stderr
        assert refused.stderr.startswith("prakit: error: sbatch failed: Batch job submission failed: Unable to "
                                         "contact slurm controller (connect failure); it submitted nothing: ")
        assert len(refused.stderr.splitlines()) == 1, refused.stderr
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["jobs"] == []


def test_a_rejected_sweep_records_nothing_and_its_folder_is_no_other_sweeps(slurm, store, tmp_path):
    """Run directories left without a sweep.json were taken over by the next sweep into the folder."""
    out = tmp_path / "sweep"
    refused = prakit("sweep", str(QUICKSTART), *job_args(store, tmp_path), "--grid", "train.seed=1,2",
                     "--cluster", "slurm", "--partition", "nosuch", "--out", str(out))
    assert refused.returncode == 2 and refused.stderr.splitlines() == [
        "prakit: error: sbatch failed: invalid partition specified: nosuch; Batch job submission failed: Invalid "
        "partition name specified; it submitted nothing: check the launch settings and that the cluster answers "
        "(`sinfo`), then submit again"], refused.stderr
    assert json.loads((out / "sweep.json").read_text())["jobs"] == []
    other = prakit("sweep", str(QUICKSTART), *job_args(store, tmp_path), "--grid", "train.seed=1,3",
                   "--cluster", "slurm", "--out", str(out))
    assert other.returncode == 2 and "holds another sweep (quickstart.toml; train.seed=1,2)" in other.stderr


def test_jobs_submitted_before_a_refusal_are_recorded_and_only_they(slurm, store, tmp_path, monkeypatch):
    """Training is submitted, then sbatch refuses the sampling (its partition does not exist)."""
    import attrs

    from prakit.sweep import jobs

    def refused_sampling(run_dir, stage, launch, **kw):
        return real(run_dir, stage, attrs.evolve(launch, partition="nosuch"), **kw)

    real = jobs.submit_stage
    monkeypatch.setattr(jobs, "submit_stage", refused_sampling)
    held = job_args(store, tmp_path, 'launch.slurm_options={hold=""}')
    sweep = Sweep.create(tmp_path / "sweep", Definition((str(QUICKSTART),), tuple(held),
                                                        (parse_grid("train.seed=1,2"),)), {"stages": [], "num": None})
    with pytest.raises(ClusterError, match="sbatch failed: invalid partition specified: nosuch"):
        submit_sweep(sweep, stages=("train", "sample"), cluster="slurm")
    recorded = Sweep.open(tmp_path / "sweep")
    try:
        assert [(j["run"], j["stage"]) for j in recorded.data["jobs"]] == [("seed=1", "train"), ("seed=2", "train")]
        assert all(queued_state(j["job_id"]) == "PENDING" for j in recorded.data["jobs"])
    finally:
        cancel_sweep(recorded)


def test_a_cancel_the_cluster_does_not_carry_out_is_an_error_not_a_count(slurm, store, tmp_path):
    """``sweep cancel`` said "cancelled 2 jobs" where scancel had failed."""
    held = job_args(store, tmp_path, 'launch.slurm_options={hold=""}')
    sweep = Sweep.create(tmp_path / "sweep", Definition((str(QUICKSTART),), tuple(held),
                                                        (parse_grid("train.seed=1,2"),)), {"stages": [], "num": None})
    [last, first] = [j["job_id"] for j in submit_sweep(sweep, cluster="slurm")][::-1]
    try:
        refused = prakit("sweep", "cancel", str(tmp_path / "sweep"), env=unreachable_controller(tmp_path))
        assert refused.returncode == 2 and refused.stderr == (
            f"prakit: error: scancel failed: Kill job error on job id {last}: Unable to contact slurm controller "
            "(connect failure); it cancelled nothing: check that the cluster answers (`sinfo`), then cancel again\n")
        assert queued_state(last) == queued_state(first) == "PENDING"
    finally:
        assert cancel_sweep(Sweep.open(tmp_path / "sweep")) == [last, first]
