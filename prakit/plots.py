"""Line plots as PNG files, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

from PIL import Image, ImageDraw

from prakit.io import atomic_file

COLOURS = ("#1f4e9c", "#c8402f", "#2f8f46", "#8a4fb0", "#d08a1c", "#2b9bb0", "#7a7a7a", "#b03a78")


def line_plot(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (720, 420),
) -> Path:
    """Draw each named ``(xs, ys)`` series as a line, with axes, ticks and a legend; non-finite points are skipped."""
    width, height = size
    left, right, top, bottom = 70, 20, 30, 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    points = {name: [(x, y) for x, y in zip(*xy) if math.isfinite(x) and math.isfinite(y)] for name, xy in series.items()}
    everything = [p for line in points.values() for p in line]
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text((left, 8), title, fill="black")
    draw.text(((left + width - right) // 2 - 3 * len(xlabel), height - 18), xlabel, fill="black")
    draw.text((4, 8), ylabel, fill="black")
    if everything:
        (x0, x1), (y0, y1) = _span(p[0] for p in everything), _span(p[1] for p in everything)

        def to_pixel(x: float, y: float) -> tuple[float, float]:
            return (left + (x - x0) / (x1 - x0) * (width - left - right),
                    height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

        for i in range(5):
            x, y = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
            px, _ = to_pixel(x, y0)
            _, py = to_pixel(x0, y)
            draw.line([px, height - bottom, px, height - bottom + 4], fill="black")
            draw.text((px - 12, height - bottom + 6), f"{x:.4g}", fill="black")
            draw.line([left - 4, py, left, py], fill="black")
            draw.text((4, py - 6), f"{y:.4g}", fill="black")
        for i, (name, line) in enumerate(points.items()):
            colour = COLOURS[i % len(COLOURS)]
            if len(line) > 1:
                draw.line([to_pixel(*p) for p in line], fill=colour, width=2)
            elif line:
                px, py = to_pixel(*line[0])
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            draw.line([width - right - 190, top + 12 + 14 * i, width - right - 170, top + 12 + 14 * i], fill=colour, width=3)
            draw.text((width - right - 165, top + 6 + 14 * i), name[:28], fill="black")
    with atomic_file(path, "wb") as f:
        image.save(f, format="PNG")
    return Path(path)


def _span(values) -> tuple[float, float]:
    values = list(values)
    low, high = min(values), max(values)
    return (low, high) if high > low else (low - 1, high + 1)
