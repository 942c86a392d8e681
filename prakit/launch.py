"""Submitting the stages of runs through submitit, on SLURM or on this machine.

Training is a :class:`~prakit.stages.TrainingJob` per config, several configs forming one job
array (an ablation); sampling and evaluation of a trained run are jobs of one process each, on
SLURM starting after the jobs they depend on. Each job runs the code as it was at submission.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

import attrs
import submitit

from prakit.choices import CLUSTERS
from prakit.config import ExperimentConfig, LaunchConfig, unstructure
from prakit.errors import PrakitError
from prakit.snapshot import environment, frozen_code
from prakit.stages import EvaluationJob, SamplingJob, TrainingJob


def tasks_per_node(launch: LaunchConfig) -> int:
    """Processes per node: ``launch.tasks_per_node``, else one per GPU, else one."""
    return launch.tasks_per_node or max(1, launch.gpus_per_node)


def one_task(launch: LaunchConfig) -> LaunchConfig:
    """Sampling and evaluation resources: one process on one node, with a GPU if training had them."""
    return attrs.evolve(launch, nodes=1, tasks_per_node=1, gpus_per_node=min(1, launch.gpus_per_node))


def executor(
    launch: LaunchConfig, name: str, cluster: str | None = None, after: Sequence[str] = ()
) -> submitit.AutoExecutor:
    """A submitit executor for ``launch`` (``cluster`` overrides ``launch.cluster``); on SLURM its
    jobs start once the jobs ``after`` have succeeded, and are cancelled if one of them fails."""
    cluster = cluster or launch.cluster
    if cluster not in CLUSTERS:
        raise PrakitError(f"unknown cluster {cluster!r}; choose one of {', '.join(CLUSTERS)}")
    out = submitit.AutoExecutor(folder=Path(launch.folder) / "%j", cluster=cluster)
    slurm = {f"slurm_{key}": getattr(launch, key) for key in ("partition", "account", "qos", "constraint")}
    extra = {key: value or True for key, value in launch.slurm_options.items()}  # "": a flag without a value
    if after:
        slurm["slurm_dependency"] = "afterok:" + ":".join(after)
        extra["kill-on-invalid-dep"] = "yes"
    out.update_parameters(
        name=name,
        nodes=launch.nodes,
        tasks_per_node=tasks_per_node(launch),
        cpus_per_task=launch.cpus_per_task,
        timeout_min=launch.timeout_min,
        **({"gpus_per_node": launch.gpus_per_node} if cluster == "slurm" else {}),
        **({"mem_gb": launch.mem_gb} if launch.mem_gb else {}),
        **{key: value for key, value in slurm.items() if value is not None},
        **({"slurm_additional_parameters": extra} if extra and cluster == "slurm" else {}),
    )
    return out


@contextlib.contextmanager
def submitting(pool: submitit.AutoExecutor, launch: LaunchConfig) -> Iterator[None]:
    """Submit ``pool``'s jobs as one array on leaving, each to run the code as it is now
    (:func:`prakit.snapshot.frozen_code`, under ``launch.folder/code``) with ``OMP_NUM_THREADS`` =
    ``launch.cpus_per_task`` unless it is set: torch then uses the CPUs a job was given, not every
    core of its node (as many threads as cores, shared with other jobs, slow each other down)."""
    threads = os.environ.get("OMP_NUM_THREADS") or str(launch.cpus_per_task)
    with frozen_code(Path(launch.folder) / "code"), environment(OMP_NUM_THREADS=threads), refused_as_error():
        with pool.batch():
            yield


class ClusterError(PrakitError):
    """A cluster command failed: no controller answered, an option was rejected, ..."""


def cluster_error(command: str, said: str, then: str) -> ClusterError:
    """A cluster ``command`` that failed, saying ``said`` (its stderr), in one line, with ``then``: what
    it did and what to do."""
    prefix = re.compile(rf"^{re.escape(command)}: (error: )?")
    lines = [prefix.sub("", line.strip()) for line in said.splitlines() if line.strip()]
    return ClusterError(f"{command} failed: {'; '.join(lines) or 'no message'}; {then}")


@contextlib.contextmanager
def refused_as_error() -> Iterator[None]:
    """A submission command that fails (``sbatch``) as a one-line :class:`ClusterError` naming it and
    its message, instead of submitit's traceback (and its copy of the message on stderr)."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            yield
    except submitit.core.utils.FailedJobError as exc:  # its message is what the command printed
        cause = exc.__cause__
        command = Path(cause.cmd[0]).name if isinstance(cause, subprocess.CalledProcessError) else "submission"
        raise cluster_error(command, str(exc), "it submitted nothing: check the launch settings and that the cluster "
                                               "answers (`sinfo`), then submit again") from None
    except BaseException:
        sys.stderr.write(said.getvalue())
        raise
    sys.stderr.write(said.getvalue())


def submit(
    runs: Sequence[tuple[ExperimentConfig, str | os.PathLike]], *, cluster: str | None = None
) -> list[submitit.Job]:
    """Submit one training job per ``(config, run_dir)``, as one job array when they share
    their launch settings; return the jobs in order."""
    if not runs:
        raise PrakitError("nothing to submit")
    launch = runs[0][0].launch
    if any(cfg.launch != launch for cfg, _ in runs):
        raise PrakitError("configs submitted together must share their launch section; submit them separately")
    names = {Path(run_dir).name for _, run_dir in runs}
    job_name = f"prakit-{names.pop()}" if len(names) == 1 else "prakit-array"
    pool = executor(launch, job_name, cluster)
    jobs = []
    with submitting(pool, launch):
        for cfg, run_dir in runs:
            jobs.append(pool.submit(TrainingJob(unstructure(cfg), str(Path(run_dir).resolve()))))
    return jobs


def submit_stage(
    run_dir: str | os.PathLike, stage: str, launch: LaunchConfig, *, cluster: str | None = None,
    num: int | None = None, shards: int = 1, after: Sequence[str] = (), overrides: Sequence[str] = (),
) -> list[submitit.Job]:
    """Submit the ``sample`` or ``eval`` stage of a trained run (``sample.*``/``eval.*`` overrides
    as ``prakit eval`` takes them), one process per job: sampling as ``shards`` jobs (one array)
    filling the store ``prakit eval`` reads, evaluation as one job."""
    if shards < 1:
        raise PrakitError(f"shards must be at least 1, got {shards}")
    pool = executor(one_task(launch), f"prakit-{stage}-{Path(run_dir).name}", cluster, after)
    run_dir = str(Path(run_dir).resolve())
    with submitting(pool, launch):
        if stage == "sample":
            return [pool.submit(SamplingJob(run_dir, num, shard, shards, tuple(overrides))) for shard in range(shards)]
        if stage == "eval":
            return [pool.submit(EvaluationJob(run_dir, num, tuple(overrides)))]
    raise PrakitError(f"unknown stage {stage!r}; choose sample or eval")
