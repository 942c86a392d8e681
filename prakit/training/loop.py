"""``prakit train``: the training job, resumable at any moment.

A run directory (:mod:`prakit.run`) gets the resolved config, checkpoints, metrics, grids and, at
the end, the loss curve. Every checkpoint carries the model, the EMAs, the
optimizer, every rank's RNGs and the step; the data order is a function of the step, so a run
resumed on as many ranks continues exactly where the checkpoint left it. Each rank draws its own
noise (:mod:`prakit.training.rng`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import attrs
import torch

from prakit.config import ExperimentConfig, unstructure
from prakit.config.io import computation_changes
from prakit.data.prepare import ensure_store
from prakit.errors import DiskFullError, PrakitError
from prakit.exporting import is_export
from prakit.locks import exclusive
from prakit.model import ARModel
from prakit.progress import Progress
from prakit.run import Run, is_lock
from prakit.summary import check_fits
from prakit.threads import cpu_threads
from prakit.tracking import Trackers
from prakit.training import distributed, rng
from prakit.training.checkpoint import CheckpointError, first_line, load_checkpoint, load_weights, save_checkpoint
from prakit.training.ema import ema_name
from prakit.training.metrics import MetricsLog, plot_loss
from prakit.training.step import TrainingStep


class RunDirectoryError(PrakitError):
    """The run directory belongs to another experiment."""


@attrs.frozen
class RunResult:
    run_dir: Path
    step: int
    checkpoint: Path | None  # the last one written (on the main rank, which writes them)
    is_main: bool = True


def train(
    cfg: ExperimentConfig, run_dir: str | Path, *, resume: bool = True, force: bool = False, progress: bool = True
) -> RunResult:
    """Train ``cfg`` in ``run_dir``, resuming from its latest checkpoint unless ``resume`` is off."""
    env = distributed.setup()
    try:
        result = _train(cfg, Path(run_dir), env, resume=resume, force=force, progress=progress and env.is_main)
        env.barrier()  # no rank tears the group down while another is still in it (gloo aborts then)
        return result
    finally:
        distributed.teardown()


def _train(cfg, run_dir: Path, env, *, resume: bool, force: bool, progress: bool) -> RunResult:
    per_rank = per_rank_batch(cfg, env)
    check_fits(cfg, env.device)  # on the meta device: a model that cannot be built or cannot fit fails here
    run = Run(run_dir)
    if is_export(run.path):  # never trained over, even with --force: it holds another run's weights
        raise RunDirectoryError(f"{run.path} is a model export (prakit export), not a run directory; "
                                "choose another --run-dir")
    try:
        with exclusive(run.train_lock, f"run {run.path}") if env.is_main else contextlib.nullcontext():
            if not force:
                check_run_dir(cfg, run)
            return train_in(cfg, run, env, per_rank, resume=resume, progress=progress)
    except DiskFullError as exc:
        raise DiskFullError(exc.path, resumes_from(run)) from None


def train_in(cfg: ExperimentConfig, run: Run, env: distributed.Distributed, per_rank: int, *, resume: bool,
             progress: bool) -> RunResult:
    """Train in ``run``, which this process holds, from its latest checkpoint (or afresh)."""
    from prakit.data import TrainLoader

    tcfg = cfg.train
    last_ckpt, resumed = open_run(cfg, run, env, resume)
    training = TrainingStep.create(cfg, env)
    rng.seed_all(rng.rank_seed(tcfg.seed, env.rank))  # then a random stream of its own on each rank
    start = resumed["step"] if resumed else 0
    loader = TrainLoader(cfg.data.store, batch_size=per_rank, seed=tcfg.seed, rank=env.rank,
                         world_size=env.world_size, hflip=cfg.data.hflip, num_workers=cfg.data.num_workers)
    batches = loader.batches(start * tcfg.grad_accum)  # draws from the global RNG: before restoring it
    if resumed:
        restore(resumed, training, last_ckpt)
        restore_rng(resumed["rng"], env, tcfg.seed, start, last_ckpt)
        del resumed  # do not hold a second copy of the weights for the whole run
    training.distribute().last_checkpoint = last_ckpt
    with cpu_threads(env.device):
        return run_steps(training, run, batches, start, progress)


def resumes_from(run: Run) -> str:
    """What a rerun of a run that stopped short resumes from."""
    latest = run.latest_checkpoint()
    return f"{latest.name} is intact, and the run resumes from it" if latest else "no checkpoint was written yet"


def per_rank_batch(cfg: ExperimentConfig, env: distributed.Distributed) -> int:
    """The images each rank reads per micro-batch."""
    tcfg = cfg.train
    per_rank, remainder = divmod(tcfg.batch_size, env.world_size * tcfg.grad_accum)
    if remainder:
        raise PrakitError(
            f"train.batch_size {tcfg.batch_size} must be divisible by world size {env.world_size} "
            f"x train.grad_accum {tcfg.grad_accum}"
        )
    return per_rank


def open_run(cfg: ExperimentConfig, run: Run, env: distributed.Distributed, resume: bool) -> tuple[Path | None, dict | None]:
    """The checkpoint the run resumes from and its state (None, None for a new run); the main
    rank says which, writes the config and prepares the data."""
    last_ckpt = run.latest_checkpoint() if resume else None
    resumed = load_checkpoint(last_ckpt, map_location=env.device) if last_ckpt else None
    if resumed:
        check_resumable(resumed, cfg, last_ckpt)
    if env.is_main:
        if resumed:
            announce(f"resuming {run.path} from {last_ckpt.name} at step {resumed['step']}")
        else:
            aside = None if resume else set_aside(run)
            why = f" (--no-resume: the earlier run is set aside in {aside})" if aside else ""
            announce(f"starting a new run in {run.path}{why}")
        run.save_config(cfg)
        ensure_store(cfg.data)
    env.barrier()
    return last_ckpt, resumed


def run_steps(training: TrainingStep, run: Run, batches, start: int, progress: bool) -> RunResult:
    """The steps from ``start`` to ``train.steps``, with their logs, checkpoints and grids."""
    cfg, env, tcfg = training.cfg, training.env, training.cfg.train
    metrics = MetricsLog(run.metrics_file, start) if env.is_main else None
    trackers = Trackers(cfg, run.path, start) if env.is_main else None
    bar = Progress("train", tcfg.steps, initial=start, unit="steps", enabled=progress, every=tcfg.log_every)
    tick, images_seen = time.perf_counter(), 0
    for step in range(start, tcfg.steps):
        result, logged = training(step, batches), {}
        images_seen += tcfg.batch_size
        done = step + 1
        if done % tcfg.log_every == 0 or done == tcfg.steps:
            loss, head, rec = env.mean(result.losses).tolist()
            elapsed = time.perf_counter() - tick
            row = {"step": step, "loss": loss, "head": head, "rec": rec, "lr": result.lr,
                   "grad_norm": float(result.grad_norm), "images_per_s": images_seen / elapsed}
            row |= {f"rollout/{name}": value for name, value in training.model.rollout.measurements().items()}
            tick, images_seen = time.perf_counter(), 0
            if metrics:
                metrics.write(row)
                trackers.log_scalars({key: value for key, value in row.items() if key != "step"}, step)
            logged = {"loss": loss, "lr": result.lr, "images/s": round(row["images_per_s"])}
        if done % tcfg.ckpt_every == 0 or done == tcfg.steps:
            rng_states = env.all_gather(rng.capture())  # every rank resumes its own
            if env.is_main:
                state = checkpoint_state(done, training, rng_states)
                milestone = bool(tcfg.milestone_every) and done % tcfg.milestone_every == 0
                training.last_checkpoint = save_checkpoint(run.checkpoint_dir, done, state, keep_last=tcfg.keep_last,
                                                           milestone=milestone)
            env.barrier()
        if env.is_main and tcfg.sample_every and done % tcfg.sample_every == 0:
            grid = write_grid(training.model, training.emas, cfg, run.grids_dir / f"step-{done:08d}.png")
            trackers.log_image_file("samples", grid, done)
        bar.update(1, **logged)
    bar.close()
    if env.is_main:
        trackers.finish()
        plot_loss(run.metrics(), run.loss_plot)
    return RunResult(run.path, tcfg.steps, training.last_checkpoint, env.is_main)


def set_aside(run: Run) -> Path | None:
    """Move everything an earlier run left in the run directory to ``previous/<UTC time>/`` in it
    (never deleting it), so that no old checkpoint outranks or rotates away the new run's.
    Returns where it went, or None if there was nothing."""
    earlier = [p for p in run.path.iterdir() if p != run.previous_dir and not is_lock(p)] if run.path.is_dir() else []
    if not earlier:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = run.previous_dir / stamp
    count = 1
    while folder.exists():
        count += 1
        folder = run.previous_dir / f"{stamp}-{count}"
    folder.mkdir(parents=True)
    for path in earlier:
        os.replace(path, folder / path.name)
    return folder


def announce(message: str) -> None:
    """Say what a run is doing, before its progress bar."""
    print(f"prakit: {message}", file=sys.stderr, flush=True)


def check_run_dir(cfg: ExperimentConfig, run: Run) -> None:
    """Refuse a run directory whose config differs from ``cfg`` in what the run computes, once
    that run has written a checkpoint (a run that failed before it is simply replaced)."""
    mismatched = run.computes_otherwise(cfg) if run.checkpoints() else []
    if mismatched:
        raise RunDirectoryError(
            f"{run.path} holds a run of a different config (differs in: {', '.join(mismatched)}); "
            f"choose another --run-dir, or pass --force to take it over"
        )


#: What a checkpoint holds beyond the weights to resume training from it, and the type of each.
TRAINING_STATE = {"optimizer": dict, "ema": dict, "rng": (dict, list)}


def check_resumable(state: dict, cfg: ExperimentConfig, path: Path) -> None:
    """Refuse to resume ``cfg`` from a checkpoint that lacks the training state, or was written by a
    config that computes otherwise."""
    how = "pass --no-resume to start afresh in this run directory (the earlier run is set aside), or choose " \
          "another --run-dir"
    lacking = [key for key, kind in TRAINING_STATE.items() if not isinstance(state.get(key), kind)]
    lacking += [f"ema[{name!r}]" for name in map(ema_name, cfg.optim.ema_decays)
                if "ema" not in lacking and not isinstance(state["ema"].get(name), dict)]
    if lacking:
        raise CheckpointError(f"{path} lacks the training state to resume from ({', '.join(lacking)}): it holds "
                              f"weights only; sample from it, or {how}")
    mismatched = computation_changes(json.loads(state["config"]), unstructure(cfg))
    if mismatched:
        raise CheckpointError(
            f"{path} was written by a different config (differs in: {', '.join(mismatched)}); {how}"
        )


def checkpoint_state(step: int, training: TrainingStep, rng_states: list) -> dict:
    return {
        "step": step,
        "model": training.model.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "ema": {name: ema.state_dict() for name, ema in training.emas.items()},
        "rng": rng_states,
        "config": json.dumps(unstructure(training.cfg)),
    }


def restore(state: dict, training: TrainingStep, path: Path) -> None:
    """Load the checkpoint ``path``'s weights, optimizer and EMAs into the live objects."""
    load_weights(training.model, state["model"], path)
    try:
        training.optimizer.load_state_dict(state["optimizer"])
        for name, ema in training.emas.items():
            ema.load_state_dict(state["ema"][name])
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}'s optimizer or EMA state does not fit the model its config builds "
                              f"({first_line(exc)}); "
                              "it was edited or written by another version: pass --no-resume to start afresh") from None


def restore_rng(states: list | dict, env: distributed.Distributed, seed: int, step: int, path: Path) -> None:
    """Restore this rank's RNGs from the checkpoint ``path``; say so when it was written by another
    number of ranks and every rank begins a fresh stream instead."""
    states = [states] if isinstance(states, dict) else states  # written before per-rank states: one rank's
    if not rng.restore_rank(states, env.rank, env.world_size, seed=seed, step=step) and env.is_main:
        warnings.warn(
            f"{path} holds the random states of {len(states)} rank(s) and this run has {env.world_size}: every rank "
            f"begins a fresh random stream at step {step} (from train.seed, its rank and the step), so the run "
            f"goes on but does not repeat an uninterrupted one bit for bit",
            stacklevel=2,
        )


@torch.no_grad()
def write_grid(model: ARModel, emas: dict, cfg: ExperimentConfig, path: Path, per_class: int = 8) -> Path:
    """A sample grid from the fastest EMA: one row per class (at most 10 classes)."""
    from prakit.data import save_grid

    classes = min(cfg.data.num_classes, 10)
    labels = torch.arange(classes).repeat_interleave(per_class).to(next(model.parameters()).device)
    fastest = min(emas.values(), key=lambda e: e.decay) if emas else None
    was_training = model.training
    model.eval()
    with fastest.applied(model) if fastest else contextlib.nullcontext():
        images = model.sample(labels, cfg.sample)
    model.train(was_training)
    return save_grid(images.cpu().numpy(), path, rows=classes)
