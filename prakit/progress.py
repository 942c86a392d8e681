"""How far a job has got: shown as it goes (:class:`Progress`), and read back from a run's files
for ``prakit sweep status`` and ``--wait``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


class Progress:
    """A job's progress as it goes: a tqdm bar on a terminal; anywhere else (a SLURM log, a pipe,
    a file) a plain line every ``every`` units (default: a tenth of the total) and at the end, with
    the latest ``facts``, the rate and the ETA, so ``tail -f`` on the log follows the job::

        train: 340 of 800 steps (42%), loss 0.1234, lr 0.001, images/s 512, 5.2 steps/s, ETA 1m28s
    """

    def __init__(self, desc: str, total: int, *, initial: int = 0, unit: str = "it", enabled: bool = True,
                 every: int | None = None, stream: IO[str] | None = None):
        from tqdm import tqdm

        self.desc, self.total, self.done, self.unit = desc, total, initial, unit
        self.stream = stream or sys.stderr
        terminal = self.stream.isatty()
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=False,
                        file=self.stream) if enabled and terminal else None
        self.lines = enabled and not terminal
        self.every = every or max(1, (total - initial) // 10)
        self.next_line = self._after(initial)
        self.started, self.start_count = time.perf_counter(), initial
        self.facts: dict[str, Any] = {}

    def update(self, n: int = 1, **facts: Any) -> None:
        """``n`` more units done; ``facts`` (``loss=0.12``) replace those shown."""
        self.done += n
        self.facts |= facts
        if self.bar is not None:
            if facts:
                self.bar.set_postfix({key: _short(value) for key, value in self.facts.items()}, refresh=False)
            self.bar.update(n)
        elif self.lines and (self.done >= self.next_line or self.done >= self.total):
            print(self.line(), file=self.stream, flush=True)
            self.next_line = self._after(self.done)

    def line(self) -> str:
        """The plain progress line."""
        parts = [f"{self.desc}: {self.done} of {self.total} {self.unit} ({100 * self.done // max(self.total, 1)}%)"]
        parts += [f"{key} {_short(value)}" for key, value in self.facts.items()]
        rate = (self.done - self.start_count) / max(time.perf_counter() - self.started, 1e-9)
        if rate > 0:
            parts.append(f"{rate:.0f} {self.unit}/s" if rate >= 100 else f"{rate:.3g} {self.unit}/s")
            if self.done < self.total:
                parts.append(f"ETA {format_duration((self.total - self.done) / rate)}")
        return ", ".join(parts)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _after(self, count: int) -> int:
        """The next multiple of ``every`` above ``count``: lines fall on the same steps however a run resumed."""
        return (count // self.every + 1) * self.every


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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
