"""The stages of a run as cluster jobs: train, sample (in shards), evaluate.

Each job is a submitit callable over a run directory and picklable plain data; requeued after a
preemption or a time limit, it continues where it stopped: training from its latest checkpoint,
sampling from the store's record of written shards. :meth:`prakit.run.Run.is_done` says from the run's files
alone whether a stage has finished, so a resubmission knows what is left.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import submitit

from prakit.run import Run


class TrainingJob(submitit.helpers.Checkpointable):
    """``prakit train`` as a submitit callable; requeued on timeout or preemption, it resumes."""

    def __init__(self, config: dict[str, Any], run_dir: str):
        self.config, self.run_dir = config, run_dir

    def __call__(self):
        from prakit.config import from_data
        from prakit.training.loop import train

        if submitit.JobEnvironment().num_tasks > 1:
            # the trainer reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return train(from_data(self.config), self.run_dir, progress=True)


class SamplingJob(submitit.helpers.Checkpointable):
    """Shard ``shard`` of ``shards`` of a run's samples (with ``sample.*`` overrides), into the store
    ``prakit eval`` reads (``RUN_DIR/samples/...``); the last shard to finish finishes the store."""

    def __init__(self, run_dir: str, num: int | None = None, shard: int = 0, shards: int = 1,
                 overrides: tuple[str, ...] = ()):
        self.run_dir, self.num, self.shard, self.shards, self.overrides = run_dir, num, shard, shards, overrides

    def __call__(self) -> str:
        from prakit.eval.evaluate import resolve
        from prakit.sampling import sample_run

        target = resolve(self.run_dir, self.overrides, num=self.num)
        sample_run(target.checkpoint, target.samples, num=target.num, options=target.options,
                   shard=self.shard, shards=self.shards, progress=True)
        return str(target.samples)


class EvaluationJob(submitit.helpers.Checkpointable):
    """``prakit eval RUN_DIR [OVERRIDES]``: the run's numbers into ``RUN_DIR/eval.json`` (sampling
    what is missing)."""

    def __init__(self, run_dir: str, num: int | None = None, overrides: tuple[str, ...] = ()):
        self.run_dir, self.num, self.overrides = run_dir, num, overrides

    def __call__(self) -> dict[str, Any]:
        from prakit.eval.evaluate import evaluate, resolve

        return evaluate(resolve(self.run_dir, self.overrides, num=self.num), progress=True)["numbers"]


class StagesJob(submitit.helpers.Checkpointable):
    """A run's stages one after another in one job, where the cluster has no job dependencies
    (``local``, ``debug``); each skips what is already done, so a requeue continues."""

    def __init__(self, config: dict[str, Any], run_dir: str, stages: tuple[str, ...], num: int | None = None):
        self.config, self.run_dir, self.stages, self.num = config, run_dir, stages, num

    def __call__(self) -> dict[str, Any]:
        jobs = {"train": TrainingJob(self.config, self.run_dir), "sample": SamplingJob(self.run_dir, self.num),
                "eval": EvaluationJob(self.run_dir, self.num)}
        run = Run(self.run_dir)
        return {stage: jobs[stage]() for stage in self.stages if not run.is_done(stage, self.num)}


class RunsFailedError(RuntimeError):
    """Some runs of a :class:`LaneJob` failed (each traceback is in the job's log)."""


class LaneJob(submitit.helpers.Checkpointable):
    """Several runs' :class:`StagesJob` one after another in one job: a sweep on this machine runs
    as many lanes at once as it has room for. A run that fails does not stop the runs after it;
    the job then fails, naming each failure. The job's folder holds :data:`LANE_FILE`: the run it
    is on and those that failed."""

    def __init__(self, runs: tuple[StagesJob, ...]):
        self.runs = runs

    def __call__(self) -> dict[str, Any]:
        import json
        import traceback

        from prakit.io import atomic_write_text

        record = submitit.JobEnvironment().paths.folder / LANE_FILE
        results, failed, failures = {}, [], []
        for run in self.runs:
            atomic_write_text(record, json.dumps({"current": run.run_dir, "failed": failed}))
            try:
                results[run.run_dir] = run()
            except Exception as exc:  # noqa: BLE001 - any failure of a run is reported at the end
                traceback.print_exc()
                failed.append(run.run_dir)
                failures.append(f"{Path(run.run_dir).name}: {type(exc).__module__}.{type(exc).__name__}: {exc}")
        atomic_write_text(record, json.dumps({"current": None, "failed": failed}))
        if failures:
            raise RunsFailedError("; ".join(failures))
        return results


#: In a :class:`LaneJob`'s folder: ``{"current": run_dir or null, "failed": [run_dir, ...]}``.
LANE_FILE = "lane.json"
