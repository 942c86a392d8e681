"""``prakit submit``: the training job through submitit, on SLURM or on this machine.

The job is a :class:`TrainingJob`: the resolved config as plain data and a run directory. On
SLURM each task exports the ``torch.distributed`` variables of its place in the job, and a job
that is preempted or runs out of time is requeued and resumes from its latest checkpoint.
Several configs submitted together form one job array (an ablation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import submitit

from prakit.choices import CLUSTERS
from prakit.config import ExperimentConfig, LaunchConfig, from_data, unstructure
from prakit.errors import PrakitError


class TrainingJob(submitit.helpers.Checkpointable):
    """``prakit train`` as a submitit callable; requeued on timeout or preemption, it resumes."""

    def __init__(self, config: dict[str, Any], run_dir: str):
        self.config, self.run_dir = config, run_dir

    def __call__(self):
        from prakit.train.loop import train

        if submitit.JobEnvironment().num_tasks > 1:
            # the trainer reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return train(from_data(self.config), self.run_dir, progress=False)


def tasks_per_node(launch: LaunchConfig) -> int:
    """Processes per node: ``launch.tasks_per_node``, else one per GPU, else one."""
    return launch.tasks_per_node or max(1, launch.gpus_per_node)


def executor(launch: LaunchConfig, name: str, cluster: str | None = None) -> submitit.AutoExecutor:
    """A submitit executor for ``launch`` (``cluster`` overrides ``launch.cluster``)."""
    cluster = cluster or launch.cluster
    if cluster not in CLUSTERS:
        raise PrakitError(f"unknown cluster {cluster!r}; choose one of {', '.join(CLUSTERS)}")
    out = submitit.AutoExecutor(folder=Path(launch.folder) / "%j", cluster=cluster)
    slurm = {f"slurm_{key}": getattr(launch, key) for key in ("partition", "account", "qos", "constraint")}
    out.update_parameters(
        name=name,
        nodes=launch.nodes,
        tasks_per_node=tasks_per_node(launch),
        cpus_per_task=launch.cpus_per_task,
        timeout_min=launch.timeout_min,
        **({"gpus_per_node": launch.gpus_per_node} if cluster == "slurm" else {}),
        **({"mem_gb": launch.mem_gb} if launch.mem_gb else {}),
        **{key: value for key, value in slurm.items() if value is not None},
    )
    return out


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
    with pool.batch():
        for cfg, run_dir in runs:
            jobs.append(pool.submit(TrainingJob(unstructure(cfg), str(Path(run_dir).resolve()))))
    return jobs
