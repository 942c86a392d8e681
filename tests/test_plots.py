"""Charts drawn with matplotlib: written whole as PNG and SVG, with readable ticks, and legends
and labels that cover nothing."""

import itertools
import math
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest
from PIL import Image

from prakit.errors import PrakitError
from prakit.plots import bar_chart, bar_figure, line_figure, line_plot
from prakit.training.metrics import plot_loss

CURVE = ([0, 1, 2, 3], [0.25, 0.5, 0.125, 0.75])


def tick_labels(figure, axis: str) -> list[str]:
    """The tick labels of ``axis`` ("x" or "y") inside the axes' view, as drawn."""
    figure.canvas.draw()
    axes = figure.axes[0]
    low, high = sorted(getattr(axes, f"get_{axis}lim")())
    ticks = getattr(axes, f"get_{axis}ticklabels")()
    return [t.get_text().replace("\u2212", "-") for t in ticks if low <= t.get_position()[axis == "y"] <= high]


def test_a_chart_is_written_as_a_png_and_an_svg_beside_it_and_nothing_else(tmp_path):
    written = line_plot({"loss": CURVE}, tmp_path / "loss.png", title="training loss", xlabel="step")
    assert written == [tmp_path / "loss.png", tmp_path / "loss.svg"]
    with Image.open(written[0]) as png:
        assert png.format == "PNG" and png.size == (1200, 675)
    assert ElementTree.parse(written[1]).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert sorted(tmp_path.iterdir()) == written


def test_a_chart_that_fails_to_draw_leaves_the_earlier_one_and_no_temporary_file(tmp_path):
    good = [path.read_bytes() for path in bar_chart({"a": (1.0, 0.1)}, tmp_path / "bars.png")]
    with pytest.raises(ValueError):  # the title's mathtext fails when the chart is drawn, while it is written
        bar_chart({"a": (2.0, 0.1)}, tmp_path / "bars.png", title=r"$\notacommand$")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.png", "bars.svg"]
    assert [(tmp_path / name).read_bytes() for name in ("bars.png", "bars.svg")] == good


def test_a_chart_path_must_name_the_png(tmp_path):
    with pytest.raises(PrakitError, match="does not end in .png"):
        line_plot({"loss": CURVE}, tmp_path / "loss.svg")
    assert not list(tmp_path.iterdir())


def test_an_axis_of_integers_has_integer_ticks_and_one_of_fractions_does_not():
    integers = tick_labels(line_figure({"gap": CURVE}), "x")  # four positions: halves would fit
    assert len(integers) >= 3 and all(label.lstrip("-").isdigit() for label in integers)
    fractions = tick_labels(line_figure({"gap": ([0, 0.5, 1.5, 3], CURVE[1])}), "x")
    assert not all(label.lstrip("-").isdigit() for label in fractions)


def test_tick_labels_are_the_values_themselves_without_an_offset():
    ys = [1000.1, 1000.2, 1000.3]
    figure = line_figure({"loss": ([0, 1, 2], ys)})
    labels = tick_labels(figure, "y")
    assert figure.axes[0].yaxis.get_offset_text().get_text() == ""
    assert labels and all(999.9 < float(label) < 1000.5 and len(label) <= 7 for label in labels)


def test_the_loss_curve_is_drawn_beside_its_svg(tmp_path):
    plot_loss([{"step": step, "loss": 17.0 / step} for step in range(1, 40)], tmp_path / "loss.png")
    with Image.open(tmp_path / "loss.png") as png:
        assert png.size == (1200, 675)
    assert "<!-- training loss -->" in (tmp_path / "loss.svg").read_text()  # the SVG names each text it draws


def test_a_log_axis_reads_in_plain_numbers():
    labels = tick_labels(line_figure({"s": ([16, 64, 256], [0.1, 0.5, 3.0])}, log_x=True), "x")
    assert {"16", "64", "256"} <= set(labels)


def test_the_legend_covers_no_data_point_and_fits_in_the_figure():
    xs = [i / 4 for i in range(41)]
    levels = {f"level {y} (3 seeds)": (xs, [y] * len(xs)) for y in range(0, 11, 2)}  # no gap inside the axes fits it
    figure = line_figure(levels)
    figure.canvas.draw()
    (legend,) = figure.legends
    box = legend.get_window_extent()
    points = figure.axes[0].transData.transform([p for xs, ys in levels.values() for p in zip(xs, ys)])
    assert not any(box.contains(x, y) for x, y in points)
    assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1 and figure.bbox.y0 <= box.y0
    assert [t.get_text() for t in legend.get_texts()] == list(levels)


def test_one_line_has_no_legend():
    assert not line_figure({"loss": CURVE}).legends


def test_non_finite_points_are_skipped_and_a_series_of_none_is_not_drawn():
    figure = line_figure({"gap": ([0, 1, 2, 3, math.nan], [1.0, math.nan, math.inf, 4.0, 5.0]),
                          "nothing": ([0, 1], [math.nan, -math.inf])})
    (line,) = figure.axes[0].lines
    assert line.get_xydata().tolist() == [[0.0, 1.0], [3.0, 4.0]] and not figure.legends


def test_bars_have_error_bars_of_their_half_widths_and_non_finite_values_are_left_out():
    figure = bar_figure({"a": (1.0, 0.0), "b": (2.0, 0.5), "nan": (math.nan, 1.0), "c": (3.0, math.nan)})
    axes = figure.axes[0]
    assert [bar.get_width() for bar in axes.patches] == [1.0, 2.0, 3.0]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["a", "b", "c"]
    (error_bars,) = axes.collections  # only b has an interval
    assert [segment.tolist() for segment in error_bars.get_segments()] == [[[1.5, 1.0], [2.5, 1.0]]]


def test_bar_names_do_not_overlap_and_fit_in_the_figure():
    names = ["pixel-ar", "x-pred", "noise-inj", "lowdim-only", "lowdim-pixel-noise", "decoded-tf", "pra",
             "pra-calibrated", "pra-selfsample", "exact-rollout"]
    figure = bar_figure({name: (i + 1.0, 0.5) for i, name in enumerate(names)})
    figure.canvas.draw()
    boxes = [label.get_window_extent() for label in figure.axes[0].get_yticklabels()]
    assert len(boxes) == len(names) and not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    assert all(figure.bbox.x0 <= box.x0 for box in boxes)


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, prakit.plots; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
