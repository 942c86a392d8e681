"""Training metrics: one JSON object per logged step in ``metrics.jsonl``, and a loss-curve chart."""

from __future__ import annotations

import json
from pathlib import Path

from prakit.io import atomic_write_text
from prakit.plots import line_plot


class MetricsLog:
    """Appends rows to ``path``; on resume, rows at or after the resumed step are dropped first."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        kept = [row for row in read_metrics(self.path) if row["step"] < resume_step]
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in kept))

    def write(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics file (none if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss(rows: list[dict], path: Path) -> None:
    """Draw the loss against the step into ``path`` (``NAME.png``) and ``NAME.svg``."""
    line_plot({"loss": ([row["step"] for row in rows], [row["loss"] for row in rows])}, path,
              title="training loss", xlabel="step", ylabel="loss")
