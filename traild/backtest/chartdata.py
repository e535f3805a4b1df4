"""What the two chart renderers share, drawing nothing: the palette, equity curves and the
slots of grouped bars.

Two renderers remain, each where only it fits: the backtest's charts are PNG files (SPEC §8),
drawn by matplotlib (``backtest.charts``); the HTML report's charts are inline SVG written by
hand (``reporting.svg``: labels as text, a tooltip per bar and point, no matplotlib import for
``traild report``). Neither can stand in for the other without a rasteriser or a second page
layout, so they share what a chart says rather than how it is drawn. This module lives in the
backtest package because ``traild.reporting`` imports the backtest, never the reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from itertools import accumulate
from typing import Any, TypeVar

_T = TypeVar("_T")
_G = TypeVar("_G", bound=Hashable)

# matplotlib's default colour cycle (tab10, "C0".."C9"): series i has the same colour in a
# backtest PNG and in the HTML report
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def colour(i: int) -> str:
    """The colour of series ``i``."""
    return PALETTE[i % len(PALETTE)]


def equity_curves(
    items: Iterable[_T],
    groups: Sequence[_G],
    group_of: Callable[[_T], _G],
    order: Callable[[_T], Any],
    pips: Callable[[_T], float],
) -> dict[_G, tuple[list[_T], list[float]]]:
    """Per group (in ``groups`` order): its items sorted by ``order`` (stable) and the running
    total of their pips after each (the equity curve)."""
    mine: dict[_G, list[_T]] = {g: [] for g in groups}
    for item in items:
        bucket = mine.get(group_of(item))
        if bucket is not None:
            bucket.append(item)
    out = {}
    for g, rows in mine.items():
        rows.sort(key=order)
        out[g] = (rows, list(accumulate(pips(r) for r in rows)))
    return out


def bar_slots(series: int) -> tuple[float, list[float]]:
    """Grouped bars in a group one unit wide: the width of each series' bar and the offset of
    its centre from the group's centre; together the bars fill the middle 80 % of the group."""
    width = 0.8 / max(series, 1)
    return width, [i * width - 0.4 + width / 2 for i in range(series)]
