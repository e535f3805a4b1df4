"""Small inline SVG charts (no JavaScript, no network): grouped bars, lines, intervals.

Axes are labelled at "nice" values (1, 2, 2.5 or 5 times a power of ten, ``nice_ticks``) that
cover the data, so labels never sit on one another; the legend is a row of its own under the
title, laid out by the width of its labels; category labels are shortened to their slot.
Colours and bar slots are the backtest charts' (``backtest.chartdata``), so a series looks the
same in a backtest PNG and on the page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

from traild.backtest.chartdata import bar_slots, colour

_W, _H = 640, 280
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 64, 12, 48, 40  # the plot area inside the frame
_CHAR_W = 7.0  # a generous average width of an 11 px sans-serif character
_TICK_FONT, _LABEL_FONT = 10, 11


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Evenly spaced round values (step 1, 2, 2.5 or 5 x 10^k) from at or below ``lo`` to at
    or above ``hi``: of the steps giving about ``count`` ticks (``count - 1`` to
    ``count + 3``), the one wasting the least of the axis on no data."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        lo, hi = lo - 0.5, lo + 0.5
    power = 10.0 ** math.floor(math.log10((hi - lo) / max(1, count - 1)))
    best: list[float] = []
    for scale in (power / 10, power, power * 10):
        for m in (1, 2, 2.5, 5):
            ticks = _ticks(lo, hi, m * scale)
            if count - 1 <= len(ticks) <= count + 3 and (
                not best or ticks[-1] - ticks[0] < best[-1] - best[0]
            ):
                best = ticks
    return best or _ticks(lo, hi, (hi - lo) / max(1, count - 1))


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) + 0.0 for k in range(first, last + 1)]


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """``value`` with as many decimals as the step between ``ticks`` needs (no 5.798)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if decimals == 0 and step < 10 and abs(step - round(step)) > 1e-9:
        decimals = 1  # 2.5, 7.5
    if decimals and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-9:
        decimals += 1  # 0.25
    text = f"{value:,.{decimals}f}"
    return "0" if text.strip("-0.,") == "" else text.replace("-", "\u2212")


def bar_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> str:
    """Grouped vertical bars: one group per label, one bar per series (NaN: no bar); zero line."""
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    ticks = nice_ticks(min([0.0, *values]), max([0.0, *values]))
    y = _scale(ticks)
    plot_w = _W - _PAD_L - _PAD_R
    group_w = plot_w / max(1, len(labels))
    width, offsets = bar_slots(len(series))
    bar_w = group_w * width
    parts = [_frame(title), _y_axis(ticks, y)]
    for g, label in enumerate(labels):
        centre = _PAD_L + (g + 0.5) * group_w
        for s, (name, vs) in enumerate(series.items()):
            v = vs[g]
            if not math.isfinite(v):
                continue
            top, bottom = sorted((y(v), y(0.0)))
            left = centre + (offsets[s] - width / 2) * group_w
            parts.append(
                f'<rect x="{left:.1f}" y="{top:.1f}" width="{bar_w * 0.9:.1f}" '
                f'height="{max(bottom - top, 0.5):.1f}" fill="{colour(s)}">'
                f"<title>{escape(label)} {escape(name)}: {v:g}</title></rect>"
            )
        parts.append(_x_label(_PAD_L + (g + 0.5) * group_w, label, group_w))
    parts.append(_legend([(name, "box") for name in series]))
    return _svg(title, parts)


def line_chart(title: str, series: Mapping[str, Sequence[float]], x_title: str = "") -> str:
    """One polyline per series over its index (e.g. cumulative pips per closed trade)."""
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    ticks = nice_ticks(min([0.0, *values]), max([0.0, *values]))
    y = _scale(ticks)
    n = max((len(vs) for vs in series.values()), default=1)
    plot_w = _W - _PAD_L - _PAD_R
    step = plot_w / max(1, n - 1)
    parts = [_frame(title), _y_axis(ticks, y)]
    for s, (name, vs) in enumerate(series.items()):
        if not vs:
            continue
        points = " ".join(f"{_PAD_L + i * step:.1f},{y(v):.1f}" for i, v in enumerate(vs))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke-width="2" '
            f'stroke="{colour(s)}"><title>{escape(name)}</title></polyline>'
        )
    if x_title:
        parts.append(
            f'<text x="{_PAD_L + plot_w / 2:.0f}" y="{_H - _PAD_B + 18}" text-anchor="middle" '
            f'font-size="{_LABEL_FONT}">{escape(x_title)}</text>'
        )
    parts.append(_legend([(name, "line") for name in series]))
    return _svg(title, parts)


def interval_chart(
    title: str, rows: Sequence[tuple[str, float, float, float]], target: float
) -> str:
    """One point with its interval whiskers per label (label, value, low, high), and a dashed
    target line: the gate at a glance. Whiskers far beyond the points are cut at the plot's
    edge with an arrowhead (one wide interval must not flatten the others)."""
    core = [target, 0.0] + [v for _, v, _, _ in rows]
    span = max(core) - min(core) or 1.0
    ends = [e for _, _, low, high in rows for e in (low, high)]
    lo = max(min([*core, *ends]), min(core) - 2 * span)
    hi = min(max([*core, *ends]), max(core) + 2 * span)
    ticks = nice_ticks(lo, hi)
    y = _scale(ticks)
    bottom, top = ticks[0], ticks[-1]
    plot_w = _W - _PAD_L - _PAD_R
    slot = plot_w / max(1, len(rows))
    parts = [_frame(title), _y_axis(ticks, y)]
    parts.append(
        f'<line x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y(target):.1f}" y2="{y(target):.1f}" '
        f'stroke="{colour(1)}" stroke-width="1.5" stroke-dasharray="6 4">'
        f"<title>target {target:g}</title></line>"
    )
    for i, (label, value, low, high) in enumerate(rows):
        x = _PAD_L + slot * (i + 0.5)
        y_low, y_high = y(max(low, bottom)), y(min(high, top))
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_low:.1f}" y2="{y_high:.1f}" '
            f'stroke="{colour(0)}" stroke-width="2"/>'
        )
        for cut, at, sign in ((high > top, y_high, 1), (low < bottom, y_low, -1)):
            if cut:  # an arrowhead: the interval goes on beyond the plot
                parts.append(
                    f'<path d="M{x - 5:.1f},{at + 7 * sign:.1f} L{x:.1f},{at:.1f} '
                    f'L{x + 5:.1f},{at + 7 * sign:.1f}" fill="{colour(0)}"/>'
                )
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y(min(max(value, bottom), top)):.1f}" r="4" '
            f'fill="{colour(0)}"><title>{escape(label)}: {value:g} [{low:g}, {high:g}]'
            "</title></circle>"
        )
        parts.append(_x_label(x, label, slot))
    parts.append(
        _legend([("improvement % with interval", "whisker"), (f"target {target:g} %", "dash")])
    )
    return _svg(title, parts)


def _scale(ticks: Sequence[float]) -> Callable[[float], float]:
    lo, hi = ticks[0], ticks[-1]
    plot_h = _H - _PAD_T - _PAD_B

    def y(v: float) -> float:
        return _PAD_T + plot_h * (hi - v) / (hi - lo)

    return y


def _svg(title: str, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" '
        f'height="{_H}" role="img" aria-label="{escape(title)}">' + "".join(parts) + "</svg>"
    )


def _frame(title: str) -> str:
    return (
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#fff"/>'
        f'<text x="{_PAD_L}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>'
    )


def _y_axis(ticks: Sequence[float], y: Callable[[float], float]) -> str:
    """A grid line and a label at each tick; the zero line darker."""
    out = []
    for v in ticks:
        out.append(
            f'<line x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="{"#444" if v == 0 else "#e2e2e2"}"/>'
            f'<text x="{_PAD_L - 6}" y="{y(v) + 3.5:.1f}" text-anchor="end" '
            f'font-size="{_TICK_FONT}">{tick_label(v, ticks)}</text>'
        )
    return "".join(out)


def _x_label(x: float, label: str, room: float) -> str:
    """A category label centred at ``x``, shortened (with an ellipsis) to fit ``room`` px."""
    fits = max(3, int(room * 0.9 / _CHAR_W))
    shown = label if len(label) <= fits else label[: fits - 1] + "\u2026"
    return (
        f'<text x="{x:.1f}" y="{_H - _PAD_B + 18}" text-anchor="middle" '
        f'font-size="{_LABEL_FONT}"><title>{escape(label)}</title>{escape(shown)}</text>'
    )


def _legend(entries: Sequence[tuple[str, str]]) -> str:
    """A row under the title, each entry as wide as its label: nothing over the plot."""
    out, x, row_y = [], float(_PAD_L), 34.0
    for i, (name, mark) in enumerate(entries):
        fill = colour(i)
        if mark == "box":
            out.append(
                f'<rect x="{x:.1f}" y="{row_y - 9:.1f}" width="10" height="10" fill="{fill}"/>'
            )
        else:
            dash = ' stroke-dasharray="6 4"' if mark == "dash" else ""
            out.append(
                f'<line x1="{x - 2:.1f}" x2="{x + 12:.1f}" y1="{row_y - 4:.1f}" '
                f'y2="{row_y - 4:.1f}" stroke="{fill}" stroke-width="2"{dash}/>'
            )
        out.append(
            f'<text x="{x + 16:.1f}" y="{row_y:.1f}" font-size="{_LABEL_FONT}">'
            f"{escape(name)}</text>"
        )
        x += 16 + _CHAR_W * len(name) + 18
    return "".join(out)
