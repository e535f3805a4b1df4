"""PNG charts of a backtest (matplotlib, Agg backend): equity, P&L distribution, metrics by
regime (trade counts on every bar), and dynamic minus fixed with 95 % intervals per bucket.
Colours, equity curves and bar slots come from ``backtest.chartdata``, shared with the HTML
report's SVG charts.

Figures are drawn on their own Agg canvas, without ``pyplot`` (its import and figure manager
cost about a third of a second and nothing here needs them); this module is imported only when
charts are written."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from traild.backtest.chartdata import bar_slots, colour, equity_curves
from traild.backtest.claims import expectancy_difference
from traild.backtest.metrics import kind_of, market_regime_of, regime_of, session_of
from traild.backtest.rows import TradeRow

_DPI = 100  # the figures' own (matplotlib's default): sizes in inches x 100 = pixels


def write_charts(
    rows: Sequence[TradeRow],
    variants: Sequence[str],
    summary: dict[str, Any],
    out: Path,
    pairs: Sequence[tuple[str, str]] = (),
) -> list[Path]:
    """Write equity.png, pnl_distribution.png, by_regime.png and (with ``pairs`` of
    (dynamic variant, baseline)) dynamic_minus_fixed.png into ``out``."""
    paths = [
        _equity(rows, variants, out / "equity.png"),
        _distribution(rows, variants, out / "pnl_distribution.png"),
        _by_regime(summary, out / "by_regime.png"),
    ]
    if pairs:
        paths.append(_difference(rows, pairs, out / "dynamic_minus_fixed.png"))
    return paths


def _buckets(row: TradeRow) -> list[str]:
    return [
        "all",
        f"vol:{regime_of(row)}",
        f"mkt:{market_regime_of(row)}",
        f"ses:{session_of(row)}",
        f"kind:{kind_of(row)}",
    ]


def _difference(rows: Sequence[TradeRow], pairs: Sequence[tuple[str, str]], path: Path) -> Path:
    """Per bucket: mean pnl of each dynamic variant minus its baseline on the same trades,
    with a 95 % day-bootstrap interval and the number of trades."""
    by_variant: dict[str, dict[str, list[TradeRow]]] = {}
    for r in rows:
        for b in _buckets(r):
            by_variant.setdefault(r.variant, {}).setdefault(b, []).append(r)
    names = sorted({b for r in rows for b in _buckets(r)}, key=lambda b: (b != "all", b))
    fig, ax = _figure((max(10, 0.7 * len(names)), 6))
    counts: list[int] = []
    width, offsets = bar_slots(len(pairs))
    x = np.arange(len(names))
    for i, (cand, base) in enumerate(pairs):
        values, lows, highs, counts = [], [], [], []
        for b in names:
            c = by_variant.get(cand, {}).get(b, [])
            value, low, high = expectancy_difference(c, by_variant.get(base, {}).get(b, []))
            values.append(np.nan if value is None else value)
            lows.append(np.nan if low is None or value is None else value - low)
            highs.append(np.nan if high is None or value is None else high - value)
            counts.append(len(c))
        ax.bar(
            x + offsets[i],
            values,
            width,
            yerr=[lows, highs],
            capsize=2,
            label=f"{cand} - {base}",
            color=colour(i),
        )
    # every pair runs the same trades, so a bucket's count is the same for all of them
    labels = [f"{b} (n={n})" for b, n in zip(names, counts, strict=True)]
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize="small")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylabel("pips per trade")
    ax.set_title("Dynamic minus fixed: expectancy difference, 95 % CI (bootstrap over days)")
    ax.legend(fontsize="small")
    return _save(fig, path)


def _equity(rows: Sequence[TradeRow], variants: Sequence[str], path: Path) -> Path:
    return _save(equity_figure(rows, variants), path)


PERIOD_GAP_MS = 7 * 86_400_000  # exits further apart than this start a new panel
MAX_PERIODS = 6


def periods(times_ms: Sequence[int]) -> list[tuple[int, int]]:
    """The stretches of time holding exits (first, last, epoch ms): cut where no trade closed
    for more than a week (files years apart), the widest gaps first, at most MAX_PERIODS."""
    ordered = sorted(times_ms)
    if not ordered:
        return []
    gaps = [(b - a, i) for i, (a, b) in enumerate(pairwise(ordered))]
    cuts = sorted(
        i for gap, i in sorted(gaps, reverse=True)[: MAX_PERIODS - 1] if gap > PERIOD_GAP_MS
    )
    out, start = [], 0
    for i in cuts:
        out.append((ordered[start], ordered[i]))
        start = i + 1
    out.append((ordered[start], ordered[-1]))
    return out


def equity_figure(rows: Sequence[TradeRow], variants: Sequence[str]) -> Figure:
    """Cumulative pips by exit time; files far apart in time get a panel each (the curve
    carries on from one to the next), so no panel is years of flat line."""
    spans = periods([r.exit_ts for r in rows]) or [(0, 1)]
    days = [max((b - a) / 86_400_000, 0.5) for a, b in spans]
    widths = [max(d, 0.15 * sum(days)) for d in days]
    fig = Figure(figsize=(10, 5), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        1, len(spans), sharey=True, squeeze=False, gridspec_kw={"width_ratios": widths}
    )
    panels = list(axes[0])
    curves = equity_curves(rows, variants, _variant, _exit_order, _pnl)
    for k, name in enumerate(variants):
        mine, equity = curves[name]
        if not mine:
            continue
        times = np.array([r.exit_ts for r in mine], dtype="datetime64[ms]")
        for ax in panels:
            ax.step(times, equity, where="post", label=name, color=colour(k))
    for i, (ax, (a, b)) in enumerate(zip(panels, spans, strict=True)):
        pad = max((b - a) * 0.02, 3_600_000)
        ax.set_xlim(np.datetime64(a - int(pad), "ms"), np.datetime64(b + int(pad), "ms"))
        ax.axhline(0, color="grey", linewidth=0.8)
        locator = mdates.AutoDateLocator(minticks=2, maxticks=4)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        ax.tick_params(axis="x", labelsize="small")
        if len(panels) > 1:  # where the time axis is cut
            ax.set_title(_period_title(a, b), fontsize="small")
            if i:
                ax.spines["left"].set_linestyle((0, (4, 3)))
                ax.tick_params(axis="y", left=False)
            if i < len(panels) - 1:
                ax.spines["right"].set_visible(False)
    panels[0].set_ylabel("pips")
    panels[0].legend(fontsize="small")
    title = "Equity curve (cumulative pips, by exit time)"
    if len(panels) > 1:
        title += f"; {len(panels)} periods, the time between them left out"
    fig.suptitle(title)
    return fig


def _variant(r: TradeRow) -> str:
    return r.variant


def _exit_order(r: TradeRow) -> tuple[int, int]:
    return (r.exit_ts, r.trade_id)


def _pnl(r: TradeRow) -> float:
    return r.pnl_pips


def _period_title(a: int, b: int) -> str:
    first, last = (np.datetime64(t, "ms").astype("datetime64[D]") for t in (a, b))
    return str(first) if first == last else f"{first} .. {last}"


def _distribution(rows: Sequence[TradeRow], variants: Sequence[str], path: Path) -> Path:
    fig, ax = _figure((10, 5))
    pnl = [r.pnl_pips for r in rows]
    bins = np.linspace(min(pnl, default=-1.0), max(pnl, default=1.0), 60).tolist()
    for k, name in enumerate(variants):
        mine = [r.pnl_pips for r in rows if r.variant == name]
        if mine:
            ax.hist(mine, bins=bins, histtype="step", linewidth=1.4, label=name, color=colour(k))
    ax.set_title("P&L per trade")
    ax.set_xlabel("pips")
    ax.set_ylabel("trades")
    ax.legend(fontsize="small")
    return _save(fig, path)


def _by_regime(summary: dict[str, Any], path: Path) -> Path:
    variants = summary["variants"]
    regimes: list[str] = []
    for v in variants.values():
        regimes += [g for g in v["by_regime"] if g not in regimes]
    fig = _canvas((15, 5))
    axes = fig.subplots(1, 3)
    panels = (
        ("expectancy_pips", "expectancy (pips)", 1.0),
        ("win_rate", "win rate (%)", 100.0),
        ("protected_share", "reached profit lock (%)", 100.0),
    )
    x = np.arange(len(regimes))
    width, offsets = bar_slots(len(variants))
    # trade counts per bucket (every variant runs the same trades; the largest count shows)
    counts = [
        max((v["by_regime"].get(g) or {}).get("trades", 0) for v in variants.values())
        for g in regimes
    ]
    labels = [f"{g}\n(n={n})" for g, n in zip(regimes, counts, strict=True)]
    for ax, (key, title, scale) in zip(axes, panels, strict=True):
        for i, (name, v) in enumerate(variants.items()):
            values = [(v["by_regime"].get(g) or {}).get(key) for g in regimes]
            heights = [np.nan if y is None else y * scale for y in values]
            ax.bar(x + offsets[i], heights, width, label=name, color=colour(i))
        ax.set_xticks(x, labels, fontsize="small")
        ax.set_title(title)
        ax.axhline(0, color="grey", linewidth=0.8)
    axes[0].legend(fontsize="small")
    fig.suptitle("Metrics by volatility regime at entry")
    return _save(fig, path)


def _canvas(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _figure(size: tuple[float, float]) -> tuple[Figure, Any]:
    fig = _canvas(size)
    return fig, fig.subplots()


def _save(fig: Figure, path: Path) -> Path:
    """Lay out, draw once, write an RGB PNG.

    Not ``savefig``: after a layout (``tight_layout`` leaves a placeholder engine behind, and
    constrained layout is one) it draws the whole figure twice, a dry run and the real one,
    while the figure's own draw runs its layout engine first. RGB: the figures are opaque
    (white), and a PNG without the alpha channel encodes faster and is smaller. No text chunks
    (no version stamp): same run, same bytes."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    canvas.draw()  # type: ignore[no-untyped-call]
    width, height = canvas.get_width_height()
    buffer = canvas.buffer_rgba()  # type: ignore[no-untyped-call]
    rgba = Image.frombuffer("RGBA", (width, height), buffer, "raw", "RGBA", 0, 1)
    rgba.convert("RGB").save(path, format="png", dpi=(_DPI, _DPI))
    return path
