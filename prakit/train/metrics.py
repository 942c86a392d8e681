"""Training metrics: one JSON object per logged step in ``metrics.jsonl``, and a loss-curve PNG."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from prakit.config.io import atomic_write_text
from prakit.errors import PrakitError


class MetricsLog:
    """Appends rows to ``run_dir/metrics.jsonl`` (and to TensorBoard under ``run_dir/tensorboard``);
    on resume, rows at or after the resumed step are dropped first."""

    def __init__(self, run_dir: Path, resume_step: int, tensorboard: bool = False):
        self.path = run_dir / "metrics.jsonl"
        kept = [row for row in read_metrics(self.path) if row["step"] < resume_step]
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in kept))
        self.writer = _tensorboard(run_dir / "tensorboard", resume_step) if tensorboard else None

    def write(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer:
            for key, value in row.items():
                if key != "step":
                    self.writer.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def _tensorboard(log_dir: Path, resume_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise PrakitError("train.tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(log_dir, purge_step=resume_step)


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics file (none if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss(rows: list[dict], path: Path, size: tuple[int, int] = (640, 360)) -> None:
    """Draw the loss against the step as a PNG (no plotting library needed)."""
    points = [(row["step"], row["loss"]) for row in rows]
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    margin = 40
    draw.rectangle([margin, margin // 2, width - margin // 2, height - margin], outline="black")
    if len(points) >= 2:
        (x0, x1), (y0, y1) = _range(p[0] for p in points), _range(p[1] for p in points)

        def to_pixel(step: float, loss: float) -> tuple[float, float]:
            px = margin + (step - x0) / (x1 - x0) * (width - 1.5 * margin)
            py = height - margin - (loss - y0) / (y1 - y0) * (height - 1.5 * margin)
            return px, py

        draw.line([to_pixel(*p) for p in points], fill="navy", width=2)
        draw.text((margin, height - margin + 8), f"step {x0:g} .. {x1:g}", fill="black")
        draw.text((4, 4), f"loss {y0:.4g} .. {y1:.4g}", fill="black")
    image.save(path)


def _range(values) -> tuple[float, float]:
    values = list(values)
    low, high = min(values), max(values)
    return (low, high) if high > low else (low - 1, high + 1)
