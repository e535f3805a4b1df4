"""What the backtest's PNG charts and the HTML report's SVG charts share (``chartdata``): one
palette (matplotlib's own cycle, so the PNGs keep their colours), one equity-curve rule, one
geometry of grouped bars."""

from __future__ import annotations

import re

import matplotlib as mpl
import pytest
from matplotlib.colors import to_hex

from traild.backtest.chartdata import PALETTE, bar_slots, colour, equity_curves
from traild.reporting.svg import bar_chart, line_chart


def test_the_palette_is_matplotlibs_default_cycle() -> None:
    cycle = [to_hex(c) for c in mpl.rcParamsDefault["axes.prop_cycle"].by_key()["color"]]
    assert list(PALETTE) == cycle
    assert colour(len(PALETTE) + 1) == PALETTE[1]


def test_equity_curves_are_running_totals_in_order_per_group() -> None:
    items = [("b", 3, 1.0), ("a", 2, 2.0), ("a", 1, -0.5), ("c", 0, 9.0), ("a", 2, 0.25)]
    curves = equity_curves(items, ["a", "b", "z"], lambda i: i[0], lambda i: i[1], lambda i: i[2])
    assert list(curves) == ["a", "b", "z"]  # the groups asked for, in their order; "c" not
    rows, curve = curves["a"]
    assert rows == [("a", 1, -0.5), ("a", 2, 2.0), ("a", 2, 0.25)]  # stable for equal keys
    assert curve == [-0.5, 1.5, 1.75]
    assert curves["z"] == ([], [])


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_bar_slots_fill_the_middle_80_percent_of_a_group(n: int) -> None:
    width, offsets = bar_slots(n)
    assert width * n == pytest.approx(0.8)
    assert offsets[0] - width / 2 == pytest.approx(-0.4)
    assert offsets[-1] + width / 2 == pytest.approx(0.4)


def test_the_svg_charts_draw_series_in_the_shared_colours() -> None:
    bars = bar_chart("t", ["x", "y"], {"s0": [1.0, 2.0], "s1": [3.0, 4.0]})
    fills = re.findall(r'fill="([^"]+)"><title>', bars)  # the bars, not the frame or legend
    assert fills == [PALETTE[0], PALETTE[1]] * 2
    lines = line_chart("t", {"s0": [1.0, 2.0], "s1": [0.0, 1.0]})
    assert re.findall(r'<polyline [^>]*stroke="([^"]+)"', lines) == [PALETTE[0], PALETTE[1]]
