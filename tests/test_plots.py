"""PNG plots drawn with Pillow: what is drawn is where the numbers say."""

import math

from PIL import Image

from prakit.plots import COLOURS, MARGINS, bar_chart, line_plot


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def coloured_rows(image: Image.Image, x: int, colour: str) -> list[int]:
    return [y for y in range(image.height) if image.getpixel((x, y)) == rgb(colour)]


def test_bars_rise_from_zero_in_proportion_with_their_error_bars(tmp_path):
    path = bar_chart({"a": (1.0, 0.0), "b": (2.0, 0.5), "nan": (math.nan, 0.0)}, tmp_path / "bars.png", ylabel="FID")
    image = Image.open(path)
    left, right = MARGINS[0], image.width - MARGINS[1]
    slot = (right - left) / 2  # the non-finite bar is left out
    a = coloured_rows(image, int(left + slot * 0.5), COLOURS[0])
    b = coloured_rows(image, int(left + slot * 1.5) + 10, COLOURS[1])  # beside the error bar
    assert a and b and max(a) == max(b)  # both from zero
    zero = max(a)
    assert abs((zero - min(b)) / (zero - min(a)) - 2.0) < 0.05
    inside = range(MARGINS[2] + 1, zero)  # within the box, which is drawn in black too
    whisker = [y for y in inside if image.getpixel((int(left + slot * 1.5), y)) == (0, 0, 0)]
    assert whisker and min(whisker) < min(b) < max(whisker)  # the error bar crosses the bar's top


def test_bar_names_use_the_width_of_two_bars_as_their_rows_alternate(tmp_path):
    names = ["pixel-ar", "x-pred", "noise-inj", "lowdim-only", "pra", "pra-calibrated", "pra-selfsample", "exact"]

    def chart(sixth: str) -> bytes:  # eight bars, as the small comparison draws: 79 px each
        bars = {name: (1.0, 0.0) for name in [*names[:5], sixth, *names[6:]]}
        return Image.open(bar_chart(bars, tmp_path / f"{sixth}.png")).tobytes()

    assert chart("pra-calibrated") != chart("pra-calibrate")  # the 14th character is drawn


def test_a_line_plot_draws_each_series_in_its_colour(tmp_path):
    path = line_plot({"up": ([0, 1, 2], [0, 1, 2]), "flat": ([0, 2], [1, 1])}, tmp_path / "lines.png")
    image = Image.open(path)

    def column(x: float) -> int:  # the pixel column of data x (the x axis spans 0..2)
        return round(MARGINS[0] + (image.width - MARGINS[0] - MARGINS[1]) * x / 2)

    flat = coloured_rows(image, column(0.5), COLOURS[1])
    assert flat and coloured_rows(image, column(1.5), COLOURS[1]) == flat  # level
    assert min(coloured_rows(image, column(0.5), COLOURS[0])) > max(flat)  # "up" below it on the left...
    assert max(coloured_rows(image, column(1.5), COLOURS[0])) < min(flat)  # ...and above it on the right
