"""Line plots and bar charts as PNG files, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

from PIL import Image, ImageDraw

from prakit.io import atomic_file

COLOURS = ("#1f4e9c", "#c8402f", "#2f8f46", "#8a4fb0", "#d08a1c", "#2b9bb0", "#7a7a7a", "#b03a78")


MARGINS = (70, 20, 30, 50)  # left, right, top, bottom


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
    image, draw = _frame(size, title, xlabel, ylabel)
    width, height = size
    left, right, top, bottom = MARGINS
    points = {name: [(x, y) for x, y in zip(*xy) if math.isfinite(x) and math.isfinite(y)] for name, xy in series.items()}
    everything = [p for line in points.values() for p in line]
    if everything:
        (x0, x1), (y0, y1) = _span(p[0] for p in everything), _span(p[1] for p in everything)

        def to_pixel(x: float, y: float) -> tuple[float, float]:
            return (left + (x - x0) / (x1 - x0) * (width - left - right), _y_pixel(y, y0, y1, size))

        _y_ticks(draw, y0, y1, size)
        for i in range(5):
            x = x0 + (x1 - x0) * i / 4
            px, _ = to_pixel(x, y0)
            draw.line([px, height - bottom, px, height - bottom + 4], fill="black")
            draw.text((px - 12, height - bottom + 6), f"{x:.4g}", fill="black")
        for i, (name, line) in enumerate(points.items()):
            colour = COLOURS[i % len(COLOURS)]
            if len(line) > 1:
                draw.line([to_pixel(*p) for p in line], fill=colour, width=2)
            elif line:
                px, py = to_pixel(*line[0])
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            draw.line([width - right - 190, top + 12 + 14 * i, width - right - 170, top + 12 + 14 * i], fill=colour, width=3)
            draw.text((width - right - 165, top + 6 + 14 * i), name[:28], fill="black")
    return _save(image, path)


def bar_chart(
    bars: Mapping[str, tuple[float, float]],
    path: str | os.PathLike,
    *,
    title: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (720, 420),
) -> Path:
    """Draw each named ``(value, spread)`` as a bar from zero with an error bar of +- spread
    (0: none), names under the bars; non-finite values are left out."""
    image, draw = _frame(size, title, "", ylabel)
    width, height = size
    left, right, top, bottom = MARGINS
    shown = {name: (v, s if math.isfinite(s) else 0.0) for name, (v, s) in bars.items() if math.isfinite(v)}
    if shown:
        y0, y1 = _span([0.0, *(v + s for v, s in shown.values()), *(v - s for v, s in shown.values())])
        _y_ticks(draw, y0, y1, size)
        slot = (width - left - right) / len(shown)
        for i, (name, (value, spread)) in enumerate(shown.items()):
            x = left + slot * (i + 0.5)
            end, zero = _y_pixel(value, y0, y1, size), _y_pixel(0, y0, y1, size)
            draw.rectangle([x - slot * 0.35, min(end, zero), x + slot * 0.35, max(end, zero)],
                           fill=COLOURS[i % len(COLOURS)])
            if spread:
                low, high = _y_pixel(value - spread, y0, y1, size), _y_pixel(value + spread, y0, y1, size)
                draw.line([x, low, x, high], fill="black", width=2)
                draw.line([x - 5, high, x + 5, high], fill="black", width=2)
                draw.line([x - 5, low, x + 5, low], fill="black", width=2)
            label = name[: max(4, int((2 * slot - 6) / 6))]  # 6 px a character; rows alternate, so two slots
            draw.text((x - 3 * len(label), height - bottom + 6 + 12 * (i % 2)), label, fill="black")
    return _save(image, path)


def _frame(size: tuple[int, int], title: str, xlabel: str, ylabel: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A white image with the plot's box, title and axis labels."""
    width, height = size
    left, right, top, bottom = MARGINS
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text((left, 8), title, fill="black")
    draw.text(((left + width - right) // 2 - 3 * len(xlabel), height - 18), xlabel, fill="black")
    draw.text((4, 8), ylabel, fill="black")
    return image, draw


def _y_pixel(y: float, y0: float, y1: float, size: tuple[int, int]) -> float:
    top, bottom = MARGINS[2:]
    return size[1] - bottom - (y - y0) / (y1 - y0) * (size[1] - top - bottom)


def _y_ticks(draw: ImageDraw.ImageDraw, y0: float, y1: float, size: tuple[int, int]) -> None:
    left = MARGINS[0]
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        py = _y_pixel(y, y0, y1, size)
        draw.line([left - 4, py, left, py], fill="black")
        draw.text((4, py - 6), f"{y:.4g}", fill="black")


def _save(image: Image.Image, path: str | os.PathLike) -> Path:
    with atomic_file(path, "wb") as f:
        image.save(f, format="PNG")
    return Path(path)


def _span(values) -> tuple[float, float]:
    values = list(values)
    low, high = min(values), max(values)
    return (low, high) if high > low else (low - 1, high + 1)
