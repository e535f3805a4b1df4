"""PNG charts of a backtest (matplotlib, Agg backend): equity, P&L distribution, by regime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after use(): the backend must be chosen first
import numpy as np
from matplotlib.figure import Figure

from traild.backtest.engine import TradeRow

_METADATA = {"Software": None}  # no version stamp: same run, same bytes


def write_charts(
    rows: Sequence[TradeRow], variants: Sequence[str], summary: dict[str, Any], out: Path
) -> list[Path]:
    """Write equity.png, pnl_distribution.png and by_regime.png into ``out``."""
    return [
        _equity(rows, variants, out / "equity.png"),
        _distribution(rows, variants, out / "pnl_distribution.png"),
        _by_regime(summary, out / "by_regime.png"),
    ]


def _equity(rows: Sequence[TradeRow], variants: Sequence[str], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 5))
    for name in variants:
        mine = sorted((r for r in rows if r.variant == name), key=lambda r: (r.exit_ts, r.trade_id))
        if not mine:
            continue
        times = np.array([r.exit_ts for r in mine], dtype="datetime64[ms]")
        ax.step(times, np.cumsum([r.pnl_pips for r in mine]), where="post", label=name)
    ax.set_title("Equity curve (cumulative pips, by exit time)")
    ax.set_ylabel("pips")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.legend(fontsize="small")
    fig.autofmt_xdate()
    return _save(fig, path)


def _distribution(rows: Sequence[TradeRow], variants: Sequence[str], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 5))
    pnl = [r.pnl_pips for r in rows]
    bins = np.linspace(min(pnl, default=-1.0), max(pnl, default=1.0), 60).tolist()
    for name in variants:
        mine = [r.pnl_pips for r in rows if r.variant == name]
        if mine:
            ax.hist(mine, bins=bins, histtype="step", linewidth=1.4, label=name)
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
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    panels = (
        ("expectancy_pips", "expectancy (pips)", 1.0),
        ("win_rate", "win rate (%)", 100.0),
        ("protected_share", "reached profit lock (%)", 100.0),
    )
    x = np.arange(len(regimes))
    width = 0.8 / max(len(variants), 1)
    for ax, (key, title, scale) in zip(axes, panels, strict=True):
        for i, (name, v) in enumerate(variants.items()):
            values = [(v["by_regime"].get(g) or {}).get(key) for g in regimes]
            heights = [np.nan if y is None else y * scale for y in values]
            ax.bar(x + i * width - 0.4 + width / 2, heights, width, label=name)
        ax.set_xticks(x, regimes)
        ax.set_title(title)
        ax.axhline(0, color="grey", linewidth=0.8)
    axes[0].legend(fontsize="small")
    fig.suptitle("Metrics by volatility regime at entry")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=_METADATA)
    plt.close(fig)
    return path
