"""Training metrics: one JSON object per logged step in ``metrics.jsonl``, and a loss-curve chart.

A job killed mid-write (or a full disk) can leave the last line cut short; readers skip such a
line with a warning, and a resumed run drops it while keeping every good row.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from prakit.io import atomic_write_text, said_when_full
from prakit.plots import line_plot


class MetricsLog:
    """Appends rows to ``path``; on resume, rows at or after the resumed step are dropped first,
    as is any row that cannot be read (said in a warning)."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        rows = read_metrics(self.path)
        kept = [row for row in rows if row["step"] < resume_step]
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in kept))

    def write(self, row: dict) -> None:
        with said_when_full(self.path), self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics file (none if it does not exist). Lines that are not a row (cut short,
    garbled, not text) are skipped with a warning naming them."""
    if not path.exists():
        return []
    rows, bad = [], []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        row = parse_row(line)
        if row is None:
            bad.append(number)
        else:
            rows.append(row)
    if bad:
        lines = f"line{'s' * (len(bad) > 1)} {', '.join(map(str, bad[:5]))}{', ...' * (len(bad) > 5)}"
        warnings.warn(f"{path}: skipping {lines}, which cannot be read (cut short by a killed job or a full disk, "
                      f"or edited); the other {len(rows)} rows are kept", stacklevel=2)
    return rows


def parse_row(line: bytes) -> dict | None:
    """A metrics row: a JSON object of numbers with an integer ``step`` at least 0; else None."""
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(row, dict) or type(row.get("step")) is not int or row["step"] < 0:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row.values()):
        return None
    return row


def plot_loss(rows: list[dict], path: Path) -> None:
    """Draw the loss against the step into ``path`` (``NAME.png``) and ``NAME.svg``."""
    line_plot({"loss": ([row["step"] for row in rows], [row["loss"] for row in rows])}, path,
              title="training loss", xlabel="step", ylabel="loss")
