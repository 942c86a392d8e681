"""How far a run's stages have got, read from their files: for ``prakit sweep status`` and ``--wait``."""

from __future__ import annotations

from pathlib import Path


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def training_progress(run_dir: Path) -> str | None:
    """``step 340 of 800, ETA 2m10s``: the last logged step, and the time the steps left take at
    the last logged speed; None before the first log line."""
    from prakit.run import Run

    run = Run(run_dir)
    rows = run.metrics() if run.exists() else []
    if not rows:
        return None
    train = run.config().train
    done, speed = rows[-1]["step"] + 1, rows[-1]["images_per_s"]
    eta = f", ETA {format_duration((train.steps - done) * train.batch_size / speed)}" if speed > 0 else ""
    return f"step {done} of {train.steps}{eta}"


def sampling_progress(run_dir: Path, num: int | None = None) -> str | None:
    """``230 of 1000 images``: samples written to the store the run's evaluation reads."""
    from prakit.data import SampleStore
    from prakit.errors import PrakitError
    from prakit.eval.evaluate import resolve

    try:
        target = resolve(run_dir, num=num)
    except PrakitError:  # no checkpoint yet: nothing to say
        return None
    if not target.samples.exists():
        return None
    return f"{SampleStore(target.samples).written} of {target.num} images"


def stage_progress(stage: str, run_dir: Path, num: int | None = None) -> str | None:
    """What :func:`training_progress` or :func:`sampling_progress` say of ``stage`` (None for eval)."""
    if stage == "train":
        return training_progress(run_dir)
    if stage == "sample":
        return sampling_progress(run_dir, num)
    return None
