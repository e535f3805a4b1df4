"""Small inline SVG charts (no JavaScript, no network): grouped bars and lines."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_W, _H, _PAD_L, _PAD_B, _PAD_T = 640, 260, 56, 48, 24


def bar_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> str:
    """Grouped vertical bars: one group per label, one bar per series (NaN: no bar); zero line."""
    values = [v for vs in series.values() for v in vs if math.isfinite(v)] or [0.0]
    lo, hi = min(0.0, *values), max(0.0, *values)
    hi = hi if hi > lo else lo + 1.0
    plot_w, plot_h = _W - _PAD_L - 8, _H - _PAD_B - _PAD_T
    group_w = plot_w / max(1, len(labels))
    bar_w = group_w * 0.8 / max(1, len(series))

    def y(v: float) -> float:
        return _PAD_T + plot_h * (hi - v) / (hi - lo)

    parts = [_frame(title), _axis(lo, hi, y)]
    for g, label in enumerate(labels):
        x0 = _PAD_L + g * group_w + group_w * 0.1
        for s, (name, vs) in enumerate(series.items()):
            v = vs[g]
            if not math.isfinite(v):
                continue
            top, bottom = sorted((y(v), y(0.0)))
            parts.append(
                f'<rect x="{x0 + s * bar_w:.1f}" y="{top:.1f}" width="{bar_w * 0.9:.1f}" '
                f'height="{max(bottom - top, 0.5):.1f}" fill="{COLOURS[s % len(COLOURS)]}">'
                f"<title>{escape(label)} {escape(name)}: {v:g}</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{_H - _PAD_B + 16}" '
            f'text-anchor="middle" font-size="11">{escape(label[:18])}</text>'
        )
    parts.append(_legend(list(series)))
    return _svg(title, parts)


def line_chart(title: str, series: Mapping[str, Sequence[float]]) -> str:
    """One polyline per series over its index (e.g. cumulative pips per closed trade)."""
    values = [v for vs in series.values() for v in vs] or [0.0]
    lo, hi = min(0.0, *values), max(0.0, *values)
    hi = hi if hi > lo else lo + 1.0
    n = max((len(vs) for vs in series.values()), default=1)
    plot_w, plot_h = _W - _PAD_L - 8, _H - _PAD_B - _PAD_T

    def y(v: float) -> float:
        return _PAD_T + plot_h * (hi - v) / (hi - lo)

    parts = [_frame(title), _axis(lo, hi, y)]
    for s, (name, vs) in enumerate(series.items()):
        if not vs:
            continue
        step = plot_w / max(1, n - 1)
        points = " ".join(f"{_PAD_L + i * step:.1f},{y(v):.1f}" for i, v in enumerate(vs))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke-width="2" '
            f'stroke="{COLOURS[s % len(COLOURS)]}"><title>{escape(name)}</title></polyline>'
        )
    parts.append(
        f'<text x="{_PAD_L + plot_w / 2:.0f}" y="{_H - _PAD_B + 16}" text-anchor="middle" '
        f'font-size="11">closed trades in order</text>'
    )
    parts.append(_legend(list(series)))
    return _svg(title, parts)


def interval_chart(
    title: str, rows: Sequence[tuple[str, float, float, float]], target: float
) -> str:
    """One point with its interval whiskers per label (label, value, low, high), and a dashed
    target line: the gate at a glance."""
    values = [target, 0.0] + [v for _, *vs in rows for v in vs]
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1.0
    plot_w, plot_h = _W - _PAD_L - 8, _H - _PAD_B - _PAD_T
    slot = plot_w / max(1, len(rows))

    def y(v: float) -> float:
        return _PAD_T + plot_h * (hi - v) / (hi - lo)

    parts = [_frame(title), _axis(lo, hi, y)]
    parts.append(
        f'<line x1="{_PAD_L}" x2="{_W - 8}" y1="{y(target):.1f}" y2="{y(target):.1f}" '
        f'stroke="{COLOURS[1]}" stroke-dasharray="6 4"><title>target {target:g}</title></line>'
    )
    for i, (label, value, low, high) in enumerate(rows):
        x = _PAD_L + slot * (i + 0.5)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y(low):.1f}" y2="{y(high):.1f}" '
            f'stroke="{COLOURS[0]}" stroke-width="2"/>'
            f'<circle cx="{x:.1f}" cy="{y(value):.1f}" r="4" fill="{COLOURS[0]}">'
            f"<title>{escape(label)}: {value:g} [{low:g}, {high:g}]</title></circle>"
            f'<text x="{x:.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle" '
            f'font-size="11">{escape(label[:18])}</text>'
        )
    parts.append(_legend(["improvement % with interval", "target"]))
    return _svg(title, parts)


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


def _axis(lo: float, hi: float, y: object) -> str:
    assert callable(y)
    out = []
    for v in (lo, (lo + hi) / 2, hi, 0.0):
        out.append(
            f'<line x1="{_PAD_L}" x2="{_W - 8}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            f'stroke="{"#444" if v == 0 else "#ddd"}"/>'
            f'<text x="{_PAD_L - 4}" y="{y(v) + 4:.1f}" text-anchor="end" '
            f'font-size="10">{v:.4g}</text>'
        )
    return "".join(out)


def _legend(names: list[str]) -> str:
    out = []
    for i, name in enumerate(names):
        x = _PAD_L + i * 170
        out.append(
            f'<rect x="{x}" y="{_H - 18}" width="10" height="10" '
            f'fill="{COLOURS[i % len(COLOURS)]}"/>'
            f'<text x="{x + 14}" y="{_H - 9}" font-size="11">{escape(name)}</text>'
        )
    return "".join(out)
