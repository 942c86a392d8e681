"""``prakit submit``: training jobs through submitit, in-process, as local subprocesses and on a
real SLURM cluster (started by ``.ci/slurm.sh``; CI sets PRAKIT_TEST_SLURM=1 to require it)."""

from pathlib import Path

import pytest
from helpers import QUICKSTART, ROOT, await_checkpoint, final_states, job_args, losses, prakit

from prakit.config import load_config
from prakit.errors import PrakitError
from prakit.launch import submit

pytestmark = pytest.mark.slow  # end to end, several processes or SLURM





def test_a_debug_job_trains_in_this_process(store, tmp_path):
    cfg = load_config(QUICKSTART, job_args(store, tmp_path))
    [job] = submit([(cfg, tmp_path / "run")], cluster="debug")
    result = job.result()
    assert result.step == 4 and result.checkpoint == tmp_path / "run" / "checkpoints" / "ckpt-00000004.pt"
    assert [step for step, _ in losses(tmp_path / "run")] == [0, 1, 2, 3]


def test_an_ablation_runs_as_local_jobs_one_per_config(store, tmp_path):
    configs = [str(ROOT / "experiments" / "digits" / name) for name in ("pra.toml", "noise-inj.toml")]
    done = prakit("submit", *configs, *job_args(store, tmp_path), "--cluster", "local", "--wait",
                  "--runs-in", "runs/digits", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("pra", "noise-inj"):
        checkpoint = Path("runs") / "digits" / name / "checkpoints" / "ckpt-00000004.pt"
        assert f"finished: run runs/digits/{name}, step 4, checkpoint {checkpoint}\n" in done.stdout
        assert (tmp_path / checkpoint).exists()
    pra, noise = (load_config(tmp_path / "runs" / "digits" / n / "config.toml") for n in ("pra", "noise-inj"))
    assert (pra.model.rollout.name, noise.model.rollout.name) == ("pra", "noise_injection")


def test_a_failed_job_is_reported_with_its_error(store, tmp_path, toy_distribution):
    nan = job_args(store, tmp_path, "model.rollout.name=toy_nan", "model.rollout.after=2")
    failed = prakit("submit", str(QUICKSTART), *nan, "--run-dir", str(tmp_path / "run"), "--cluster", "local",
                    "--wait", env={"PYTHONPATH": toy_distribution})
    assert failed.returncode == 1
    assert "failed: prakit.training.step.NonFiniteLossError: non-finite loss at step 2" in failed.stdout
    assert "_log.err" in failed.stdout  # where the whole traceback is


def test_bad_submissions_are_clear_errors(store, tmp_path):
    cfg = load_config(QUICKSTART, job_args(store, tmp_path))
    with pytest.raises(PrakitError, match="nothing to submit"):
        submit([])
    other = load_config(QUICKSTART, job_args(store, tmp_path, "launch.nodes=2"))
    with pytest.raises(PrakitError, match="must share their launch section"):
        submit([(cfg, tmp_path / "a"), (other, tmp_path / "b")], cluster="debug")
    two = prakit("submit", str(QUICKSTART), str(QUICKSTART), "--run-dir", "x")
    assert two.returncode == 2 and "--run-dir names the run directory of a single config" in two.stderr
    same = prakit("submit", str(QUICKSTART), str(ROOT / "experiments" / "quickstart.toml"))
    assert same.returncode == 2 and "share a file name" in same.stderr




def test_an_option_sbatch_rejects_is_one_line_naming_sbatch(slurm, store, tmp_path):
    refused = prakit("submit", str(QUICKSTART), *job_args(store, tmp_path), "--run-dir", str(tmp_path / "run"),
                     "--cluster", "slurm", "--slurm-option", "nosuchopt")
    assert refused.returncode == 2 and refused.stderr.startswith(
        "prakit: error: sbatch failed: unrecognized option '--nosuchopt'; "), refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_slurm_job_trains_with_two_ranks(slurm, store, tmp_path):
    args = job_args(store, tmp_path, "launch.tasks_per_node=2")
    done = prakit("submit", str(QUICKSTART), *args, "--run-dir", str(tmp_path / "run"), "--cluster", "slurm",
                  "--wait", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.split()[1].rstrip(":")
    assert f"job {job_id} finished" in done.stdout
    assert [step for step, _ in losses(tmp_path / "run")] == [0, 1, 2, 3]
    logs = sorted(p.name for p in (tmp_path / "submitit" / job_id).glob("*_log.out"))
    assert logs == [f"{job_id}_0_log.out", f"{job_id}_1_log.out"]  # one task per rank
    assert final_states(job_id) == ["COMPLETED"]


def test_an_interrupted_slurm_job_is_requeued_and_resumes(slurm, store, tmp_path):
    cfg = load_config(QUICKSTART, job_args(store, tmp_path, "train.steps=300", "train.log_every=10",
                                           "train.ckpt_every=10"))
    [job] = submit([(cfg, tmp_path / "run")], cluster="slurm")
    await_checkpoint(tmp_path / "run")
    job._interrupt(timeout=True)  # the signal SLURM sends ahead of the time limit (or a preemption)
    assert job.results()[0].step == 300
    assert [step for step, _ in losses(tmp_path / "run")] == list(range(9, 300, 10))  # each window logged once
    assert final_states(job.job_id) == ["REQUEUED", "COMPLETED"]


def test_a_debug_submission_runs_in_this_process_without_wait(store, tmp_path):
    done = prakit("submit", str(QUICKSTART), *job_args(store, tmp_path), "--run-dir", str(tmp_path / "run"),
                  "--cluster", "debug")
    assert done.returncode == 0, done.stderr
    assert "finished: run " in done.stdout and (tmp_path / "run" / "checkpoints" / "ckpt-00000004.pt").is_file()


def test_a_stage_job_samples_with_the_overrides_given_and_refuses_others(store, tmp_path):
    from prakit.data.store import read_attrs
    from prakit.training.loop import train

    run_dir = train(load_config(QUICKSTART, job_args(store, tmp_path)), tmp_path / "run", progress=False).run_dir
    bad = prakit("submit", "--stage", "sample", str(run_dir), "train.steps=3", "--cluster", "debug")
    assert bad.returncode == 2 and "can change only the sample and eval sections, not train.steps=3" in bad.stderr
    done = prakit("submit", "--stage", "sample", str(run_dir), "--num", "4", "sample.cfg_scale=3", "--cluster", "debug")
    assert done.returncode == 0, done.stdout + done.stderr
    [store_path] = (run_dir / "samples").glob("*.zarr")
    assert read_attrs(store_path)["sampling"]["cfg_scale"] == 3 and f"finished: sample {run_dir}" in done.stdout


def test_launch_settings_become_sbatch_options(tmp_path):
    from prakit.config import LaunchConfig
    from prakit.launch import executor

    launch = LaunchConfig(folder=str(tmp_path), partition="gpu", slurm_options={"mail-type": "END", "hold": ""})
    script = executor(launch, "prakit-x", "slurm", after=["12", "13_0"])._executor._make_submission_file_text("cmd", "0")
    for line in ("--partition=gpu", "--mail-type=END", "--hold", "--dependency=afterok:12:13_0",
                 "--kill-on-invalid-dep=yes", "--ntasks-per-node=8", "--gpus-per-node=8"):
        assert f"#SBATCH {line}\n" in script


def test_sbatch_options_are_named_without_dashes(store, tmp_path):
    bad = prakit("config", "validate", str(QUICKSTART), 'launch.slurm_options={"--mail-type"="END"}')
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[1:] == [
        """  launch.slurm_options: must name sbatch options without their dashes, e.g. {mail-type = "END"}, """
        "not '--mail-type'"]


def test_a_job_gets_as_many_threads_as_cpus_per_task_unless_omp_num_threads_says(tmp_path, monkeypatch):
    import os

    from prakit.launch import executor, submitting

    launch = load_config(QUICKSTART, ["launch.cpus_per_task=3", f"launch.folder={tmp_path}"]).launch

    def job_threads() -> str:
        pool = executor(launch, "prakit-threads", "local")
        with submitting(pool, launch):
            job = pool.submit(os.getenv, "OMP_NUM_THREADS")
        return job.result()

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert job_threads() == "3" and "OMP_NUM_THREADS" not in os.environ  # restored after submitting
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert job_threads() == "1"
