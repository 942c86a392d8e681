"""A sweep's jobs: submitting the stages that are left, reading their states back, cancelling.

On SLURM each stage of a run is its own job: training as one array over the runs, then each
run's sampling (an array of shards) after its training (``afterok``), then its evaluation after
its sampling. A job whose dependency fails is cancelled by SLURM, so a rerun submits it again.
Where a cluster has no dependencies (``local``, ``debug``), a run's stages run one after another
in one job; on ``local`` the runs share as many jobs (lanes) as the machine has room for, each
taking its runs in turn. States come from SLURM accounting through submitit, or from the process
and its result file on this machine.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import attrs
import submitit

from prakit.config import ExperimentConfig, LaunchConfig, load_config, unstructure
from prakit.errors import PrakitError
from prakit.io import DamagedFileError, read_json
from prakit.launch import cluster_error, executor, submit, submit_stage, submitting
from prakit.run import STAGES, Run
from prakit.stages import LANE_FILE, LaneJob, StagesJob
from prakit.sweep.manifest import Sweep

#: SLURM states of a job that is queued or running: such a stage is not submitted again.
ACTIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                    "REQUEUE_HOLD", "REQUEUE_FED", "STAGE_OUT"})


#: A lane job's record (:data:`~prakit.stages.LANE_FILE`), and what to do when it is damaged.
LANE_SHAPE = {"current": (str, type(None)), "failed": list}
LANE_FIX = ("the lane job writes it anew as it starts each run, so wait; or stop the lane with "
            "`prakit sweep cancel SWEEP_DIR` and rerun the sweep, which redoes what is not done")

#: What ``sweep status`` says of a job that ended without running.
NEVER_STARTED = "it never ran: a stage it waits for failed, or it was cancelled; rerun the sweep to submit it again"


def job(record: dict[str, Any]) -> submitit.Job:
    """The submitit job a manifest record names."""
    kind = submitit.SlurmJob if record["cluster"] == "slurm" else submitit.LocalJob
    return kind(record["folder"], record["job_id"])


def job_state(record: dict[str, Any], mode: str = "standard") -> str:
    """``PENDING``, ``RUNNING``, ``COMPLETED``, ``FAILED``, ``CANCELLED``, ... as SLURM accounting has
    it (``mode="force"`` asks sacct again); for a job on this machine, from its process and its
    result file."""
    if record["cluster"] == "slurm":
        slurm = job(record)
        state = slurm.watcher.get_state(slurm.job_id, mode=mode).split()[0]  # "CANCELLED by 0" -> "CANCELLED"
        return queued_state(slurm.job_id) if state == "UNKNOWN" else state
    if record["cluster"] == "local" and process_alive(int(record["job_id"])):
        return "RUNNING"
    result = job_result(record)
    return "COMPLETED" if result is not None and result[0] == "success" else "FAILED"


def queued_state(job_id: str) -> str:
    """The job's state in SLURM's queue, for a job that accounting does not list yet (it can lag
    a submission by seconds); ``UNKNOWN`` if the queue does not hold it either."""
    try:
        queue = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "UNKNOWN"
    states = queue.stdout.split()
    return states[0] if queue.returncode == 0 and states else "UNKNOWN"


def wait(records: Sequence[dict[str, Any]], poll_s: float = 2.0, tick: Callable[[], None] | None = None) -> None:
    """Until every job of ``records`` has left the queue (completed, failed or cancelled); calls
    ``tick`` after every look."""
    while any(job_state(r, mode="force") in ACTIVE | {"UNKNOWN"} for r in records):
        if tick:
            tick()
        time.sleep(poll_s)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live submitit job process of this machine."""
    try:
        return b"submitit" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def job_result(record: dict[str, Any]) -> tuple[str, Any] | None:
    """The job's result file: (``success`` or ``error``, what it returned or raised); None if it
    wrote none; a :class:`~prakit.io.DamagedFileError` if it cannot be read."""
    path = job(record).paths.result_pickle
    if not path.is_file():
        return None
    try:
        with path.open("rb") as file:
            result = OutcomeUnpickler(file).load()
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises any of many types
        result = exc
    if not (isinstance(result, tuple) and len(result) == 2 and result[0] in ("success", "error")):
        raise DamagedFileError(path, "not a job's result", "delete it and rerun the sweep's command: the stages "
                                                           "its runs' files show done are kept")
    return result


class Moved:
    """What a result holds of a class that is no longer where an earlier version put it."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class OutcomeUnpickler(pickle.Unpickler):
    """Reads a job's result, a class that moved since it was written read as :class:`Moved`: a job
    an earlier version ran still tells whether it succeeded."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return Moved


def error_line(record: dict[str, Any]) -> str | None:
    """The last line of a failed job's traceback, else of its error log; None if it never started."""
    result = job_result(record)
    if result is not None and result[0] == "error":
        return last_line(str(result[1]))
    stderr = job(record).paths.stderr
    if stderr.is_file():
        return last_line(stderr.read_text(errors="replace")) or "no error message; see the log"
    return None


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def sweep_configs(sweep: Sweep) -> dict[str, ExperimentConfig]:
    """Each member's resolved config, read now (a config file that fails fails here, before any job)."""
    return {name: load_config(run["config"], run["overrides"]) for name, run in sweep.data["runs"].items()}


def local_lanes(launch: LaunchConfig) -> int:
    """How many runs a sweep on this machine (``local``) runs at once: one per ``cpus_per_task``
    cores, one at a time where jobs take GPUs."""
    if launch.gpus_per_node:
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, launch.cpus_per_task))


def shared_launch(configs: dict[str, ExperimentConfig]) -> LaunchConfig:
    first, *others = [cfg.launch for cfg in configs.values()]
    if any(launch != first for launch in others):
        raise PrakitError("the runs of a sweep must share their launch section; sweep them separately")
    return first


def submit_sweep(sweep: Sweep, *, stages: Sequence[str] = ("train",), cluster: str | None = None,
                 num: int | None = None, shards: int = 1) -> list[dict[str, Any]]:
    """Submit every stage of every run that is neither done nor queued or running; record the jobs
    in the sweep's manifest and return their records."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise PrakitError(f"unknown stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    if num is not None and num < 1:
        raise PrakitError(f"--num must be at least 1, got {num}")
    configs = sweep_configs(sweep)
    launch = shared_launch(configs)
    for name, cfg in configs.items():
        check_own_run(Run(sweep.run_dir(name)), cfg)
    sweep.save()  # before any run directory: a folder with runs but no sweep.json is no sweep's
    for name, cfg in configs.items():
        run = Run(sweep.run_dir(name))
        if not run.exists():
            run.save_config(cfg)
    submission = Submission(sweep, configs, launch, cluster or launch.cluster, tuple(stages), num)
    before = len(sweep.data["jobs"])
    try:
        if submission.cluster == "slurm":
            submit_to_slurm(submission, shards)
        else:
            submit_here(submission)
    finally:  # what was submitted before a failure is recorded, and nothing else
        sweep.save()
    return sweep.data["jobs"][before:]


def check_own_run(run: Run, cfg: ExperimentConfig) -> None:
    """Refuse a run directory that holds a run of another config than the sweep's member ``cfg``:
    a sweep takes over only runs that compute what it would."""
    changed = run.computes_otherwise(cfg)
    if changed:
        raise PrakitError(f"{run.path} holds a run of another config than this sweep's (differs in: "
                          f"{', '.join(changed)}); move it away or choose another --out (or, if the sweep's "
                          "config files changed since it started, restore them)")


@attrs.define
class Submission:
    """One ``submit_sweep``: what it submits, where, and what each run has left to do."""

    sweep: Sweep
    configs: dict[str, ExperimentConfig]
    launch: LaunchConfig
    cluster: str
    stages: tuple[str, ...]
    num: int | None
    number: int = attrs.field(init=False)

    def __attrs_post_init__(self):
        self.number = 1 + max((j["submission"] for j in self.sweep.data["jobs"]), default=0)

    def note(self, name: str, stage: str, submitted: submitit.Job, **extra: Any) -> str:
        """Record a job in the manifest; its id."""
        self.sweep.record(name, stage, submitted.job_id, str(Path(self.launch.folder).resolve() / "%j"), self.cluster,
                          submission=self.number, **extra)
        return submitted.job_id

    def active(self, name: str, stage: str) -> list[str]:
        return [j["job_id"] for j in self.sweep.jobs(name, stage) if job_state(j) in ACTIVE]

    def undone(self, name: str, stage: str) -> bool:
        return stage in self.stages and not Run(self.sweep.run_dir(name)).is_done(stage, self.num)

    def left(self, name: str, stage: str) -> bool:
        return self.undone(name, stage) and not self.active(name, stage)


def submit_here(sub: Submission) -> None:
    """``local`` and ``debug``: each run's stages one after another in one job (no dependencies
    there); ``local`` runs as many lanes of runs at once as the machine has room for, ``debug``
    runs each job in this process, now."""
    todo = [n for n in sub.configs if any(sub.undone(n, stage) for stage in sub.stages) and not sub.active(n, "stages")]
    if not todo:  # nothing to submit (submitit warns of an empty batch)
        return
    runs = {n: StagesJob(unstructure(sub.configs[n]), str(sub.sweep.run_dir(n).resolve()), sub.stages, sub.num)
            for n in todo}
    pool = executor(sub.launch, "prakit-sweep", sub.cluster)
    if sub.cluster == "local":
        width = min(len(todo), local_lanes(sub.launch))
        lanes = [todo[k::width] for k in range(width)]
        with submitting(pool, sub.launch):
            jobs = [pool.submit(LaneJob(tuple(runs[n] for n in lane))) for lane in lanes]
        for lane, submitted in zip(lanes, jobs):
            for name in lane:
                sub.note(name, "stages", submitted, stages=list(sub.stages), lane=lane)
        return
    with submitting(pool, sub.launch):
        jobs = [pool.submit(runs[n]) for n in todo]
    for name, submitted in zip(todo, jobs):
        sub.note(name, "stages", submitted, stages=list(sub.stages))
    sub.sweep.save()
    for submitted in jobs:
        submitted.results()


def submit_to_slurm(sub: Submission, shards: int) -> None:
    """A job per stage of each run (sampling in ``shards``), each waiting on the one before it."""
    trains = [n for n in sub.configs if sub.left(n, "train")]
    jobs = submit([(sub.configs[n], sub.sweep.run_dir(n)) for n in trains], cluster=sub.cluster) if trains else []
    after = {n: [sub.note(n, "train", j)] for n, j in zip(trains, jobs)}
    for name in sub.configs:
        upstream = after.get(name) or sub.active(name, "train")
        if sub.left(name, "sample"):
            shard_jobs = submit_stage(sub.sweep.run_dir(name), "sample", sub.launch, cluster=sub.cluster, num=sub.num,
                                      shards=shards, after=upstream)
            upstream = [sub.note(name, "sample", j, shard=s) for s, j in enumerate(shard_jobs)]
        elif "sample" in sub.stages:
            upstream = sub.active(name, "sample") or upstream
        if sub.left(name, "eval"):
            [evaluation] = submit_stage(sub.sweep.run_dir(name), "eval", sub.launch, cluster=sub.cluster, num=sub.num,
                                        after=upstream)
            sub.note(name, "eval", evaluation)


def stage_states(sweep: Sweep, stages: Sequence[str] = STAGES, num: int | None = None) -> list[dict[str, Any]]:
    """One row per run and stage: its state, job ids, and for a failure the error line and log.
    Of a run's stages in one job (``local``, ``debug``), those after the unfinished one are
    ``WAITING`` while the job runs and ``NOT RUN`` once it has ended; a run whose lane has not
    come to it is ``PENDING``."""
    rows = []
    for name in sweep.names:
        combined, ahead = sweep.jobs(name, "stages"), None
        for stage in stages:
            own = sweep.jobs(name, stage)
            records = own or [j for j in combined if stage in j.get("stages", ())]
            row = {"run": name, "stage": stage, "jobs": [j["job_id"] for j in records], "state": "NOT SUBMITTED"}
            if Run(sweep.run_dir(name)).is_done(stage, num):
                row["state"] = "COMPLETED"
            elif records and ahead:
                row["state"] = "WAITING" if ahead in ACTIVE else "NOT RUN"
            elif records:
                row.update(jobs_state(records))
                if row["state"] == "RUNNING" and "lane" in records[0]:
                    row.update(lane_state(records[0], sweep.run_dir(name)))
                ahead = None if own else row["state"]
            rows.append(row)
    return rows


def lane_state(record: dict[str, Any], run_dir: Path) -> dict[str, str]:
    """The state of a run in a running lane job: ``RUNNING`` if the lane is on it, ``FAILED`` (with
    the job's log) if it failed before, else ``PENDING``: its turn has not come."""
    path = job(record).paths.folder / LANE_FILE
    lane = read_json(path, LANE_FIX, LANE_SHAPE) if path.exists() else {"current": None, "failed": []}
    run = str(run_dir.resolve())  # as the lane's jobs name their runs
    if run in lane["failed"]:
        return {"state": "FAILED", "error": "failed; its lane goes on with the runs after it",
                "log": str(job(record).paths.stderr)}
    return {"state": "RUNNING" if lane["current"] == run else "PENDING"}


def jobs_state(records: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The state of a stage's jobs (the first that has not completed), and for a failure its error
    line and log, or a note that it never ran."""
    states = [job_state(j) for j in records]
    out = {"state": next((s for s in states if s != "COMPLETED"), "COMPLETED")}
    failed = [j for j, s in zip(records, states) if s not in ACTIVE and s != "COMPLETED"]
    error = error_line(failed[0]) if failed else None
    if error:
        out.update(error=error, log=str(job(failed[0]).paths.stderr))
    elif failed:
        out["note"] = NEVER_STARTED
    return out


def cancel_sweep(sweep: Sweep) -> list[str]:
    """Cancel every queued or running job of the sweep, later stages first (so that SLURM does not
    cancel them for their dependency meanwhile), and those whose state SLURM does not say; return
    their ids."""
    cancelled = []
    for record in reversed(sweep.data["jobs"]):
        if record["job_id"] not in cancelled and job_state(record) in ACTIVE | {"UNKNOWN"}:
            if record["cluster"] == "slurm":
                scancel = subprocess.run(["scancel", record["job_id"]], capture_output=True, text=True)
                if scancel.returncode:  # a job that has just ended is no failure: scancel says nothing
                    done = f"it cancelled {', '.join(cancelled)} before" if cancelled else "it cancelled nothing"
                    raise cluster_error("scancel", scancel.stderr, f"{done}: check that the cluster answers "
                                                                   "(`sinfo`), then cancel again")
            else:
                os.kill(int(record["job_id"]), 15)
            cancelled.append(record["job_id"])
    return cancelled
