"""Line plots and bar charts drawn with matplotlib, each written as ``NAME.png`` and ``NAME.svg``.

matplotlib is imported when a chart is drawn, not with this module, and only its Agg and SVG
canvases are used: drawing never opens a window or changes pyplot's backend.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

from prakit.errors import PrakitError
from prakit.io import atomic_file

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Width of every chart and height of a line plot, in inches; the PNG's dots per inch.
WIDTH, HEIGHT, DPI = 8.0, 4.5, 150
#: Lines past the ten colours of the palette change their dash.
LINE_STYLES = ("-", "--", ":", "-.")
#: The steps between ticks, times a power of ten: no 2.5, whose ticks take an extra digit.
ROUND_STEPS = (1, 2, 5, 10)
#: A series of at most this many points marks each of them.
MARKED_POINTS = 32
#: Plain tick labels (no offset such as "+1e3" added to them) and files that differ only when the chart does.
STYLE = {"axes.formatter.useoffset": False, "svg.hashsalt": "prakit", "svg.fonttype": "path"}
METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}


def line_plot(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    log_x: bool = False,
) -> list[Path]:
    """Draw :func:`line_figure` into ``path`` (``NAME.png``) and ``NAME.svg`` beside it; both paths."""
    return save(line_figure(series, title=title, xlabel=xlabel, ylabel=ylabel, log_x=log_x), path)


def bar_chart(
    bars: Mapping[str, tuple[float, float]],
    path: str | os.PathLike,
    *,
    title: str = "",
    value_label: str = "",
) -> list[Path]:
    """Draw :func:`bar_figure` into ``path`` (``NAME.png``) and ``NAME.svg`` beside it; both paths."""
    return save(bar_figure(bars, title=title, value_label=value_label), path)


def line_figure(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    log_x: bool = False,
) -> Figure:
    """Each named ``(xs, ys)`` series as a line, its non-finite points skipped (a series with
    none left is not drawn); integer ticks when every x is an integer; ``log_x``: x on a base-2
    log scale; a legend outside the axes, on the right, when there are several lines."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    with style():
        figure, axes = new_figure(title, (WIDTH, HEIGHT))
        xs_drawn = []
        for i, (name, (xs, ys)) in enumerate(series.items()):
            points = [(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
            if not points:
                continue
            x, y = zip(*points)
            xs_drawn += x
            axes.plot(x, y, label=name, color=f"C{i % 10}", linestyle=LINE_STYLES[i // 10 % len(LINE_STYLES)],
                      marker="o" if len(points) <= MARKED_POINTS else None, markersize=3)
        axes.yaxis.set_major_locator(MaxNLocator(steps=ROUND_STEPS))
        if log_x:
            axes.set_xscale("log", base=2)
            axes.xaxis.set_major_formatter(ScalarFormatter())
        else:
            integers = bool(xs_drawn) and all(float(x).is_integer() for x in xs_drawn)
            axes.xaxis.set_major_locator(MaxNLocator(integer=integers, steps=ROUND_STEPS))
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        if len(axes.lines) > 1:
            figure.legend(loc="outside right upper", fontsize="small")
    return figure


def bar_figure(bars: Mapping[str, tuple[float, float]], *, title: str = "", value_label: str = "") -> Figure:
    """Each named ``(value, half_width)`` as a horizontal bar from zero, the first on top, its name
    beside it, with an error bar of +- half_width (0 or non-finite: none); bars with a non-finite
    value are left out."""
    from matplotlib.ticker import MaxNLocator

    shown = {name: (value, spread if math.isfinite(spread) else 0.0)
             for name, (value, spread) in bars.items() if math.isfinite(value)}
    with style():
        figure, axes = new_figure(title, (WIDTH, 1.2 + 0.4 * max(len(shown), 2)))
        rows = range(len(shown))
        values = [value for value, _ in shown.values()]
        axes.barh(rows, values, color=[f"C{i % 10}" for i in rows], height=0.6)
        axes.xaxis.set_major_locator(MaxNLocator(steps=ROUND_STEPS))
        spread = [(row, value, half) for row, (value, half) in zip(rows, shown.values()) if half]
        if spread:
            row, value, half = zip(*spread)
            axes.errorbar(value, row, xerr=half, fmt="none", ecolor="black", elinewidth=1.2, capsize=4)
        axes.set_yticks(rows, list(shown))
        axes.invert_yaxis()
        axes.set_xlabel(value_label)
        axes.grid(axis="y", visible=False)
    return figure


def new_figure(title: str, size: tuple[float, float]) -> tuple[Figure, Axes]:
    """A figure on the Agg canvas with one grid-lined axes under ``title``, laid out so that
    labels and an outside legend fit."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title, fontsize="medium")
    axes.grid(alpha=0.3)
    return figure, axes


def save(figure: Figure, path: str | os.PathLike) -> list[Path]:
    """Write ``figure`` to ``path`` (``NAME.png``) and to ``NAME.svg``, each whole or not at all."""
    png = Path(path)
    if png.suffix != ".png":
        raise PrakitError(f"a chart is written as NAME.png and NAME.svg: {png} does not end in .png")
    written = [png, png.with_suffix(".svg")]
    with style():
        for target in written:
            kind = target.suffix[1:]
            with atomic_file(target, "wb") as f:
                figure.savefig(f, format=kind, dpi=DPI, metadata=METADATA[kind])
    return written


@contextlib.contextmanager
def style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield
