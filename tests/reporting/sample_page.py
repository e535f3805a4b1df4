"""A full ``report --html`` page from generated trades: four pairs in every rollout stage,
long recommendations, the counterfactual-free rollout table at its widest, and a backtest
comparison. The Chromium layout test renders it; ``docs/screenshots.py`` photographs it."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from tests.reporting.helpers import DAY0
from traild.config.settings import Settings
from traild.core.calculator import DYNAMIC, FIXED
from traild.reporting.html import render
from traild.reporting.live import LiveTrade
from traild.reporting.rollout import rollout_status
from traild.reporting.vs_backtest import compare

PAIRS = ("CS.D.EURUSD.MINI.IP", "CS.D.GBPUSD.MINI.IP", "CS.D.USDJPY.MINI.IP", "CS.D.AUDUSD.MINI.IP")
SETTINGS = Settings(
    trailing={"enable_dynamic_trailing": True, "dynamic_trailing_pairs": ["EURUSD", "GBPUSD"]},
    rollout={"bootstrap_samples": 300},
)


def sample_trades(seed: int = 23) -> list[LiveTrade]:
    """Per pair a few dozen closed trades of each method over two months, with a plausible
    spread of outcomes (losses of about the stop, wins up to the stages)."""
    from datetime import timedelta

    rng = random.Random(seed)
    trades = []
    for k, epic in enumerate(PAIRS):
        for method, edge in ((DYNAMIC, 1.5 - k), (FIXED, 0.0)):
            for i in range(18 + 9 * k):
                pnl = rng.choice((-15.0, -8.0, 3.0, 10.0, 22.0, 31.0)) + edge + rng.gauss(0, 2)
                mfe = max(pnl, 0.0) + abs(rng.gauss(4, 3))
                locked = pnl > 5
                trades.append(
                    LiveTrade(epic, method, round(pnl, 1), DAY0 + timedelta(days=i * 2 + k),
                              round(mfe, 1), locked, rng.uniform(3, 40) if locked else None)
                )  # fmt: skip
    return trades


def backtest_summary() -> dict[str, object]:
    """A ``summary.json`` as ``traild backtest`` writes it, with per-pair figures."""

    def variant(e: float, win: float) -> dict[str, object]:
        return {"trades": 400, "win_rate": win, "expectancy_pips": e, "profit_capture_pct": 55.0,
                "protected_share": 0.6, "median_minutes_to_lock": 9.0}  # fmt: skip

    def per_pair(base: float) -> dict[str, object]:
        return {epic: variant(base + 0.4 * k, 0.5) for k, epic in enumerate(PAIRS)}

    fixed, dynamic = variant(3.1, 0.52), variant(3.6, 0.55)
    fixed["by_pair"], dynamic["by_pair"] = per_pair(2.5), per_pair(3.0)
    return {"variants": {"fixed+lock": fixed, "dynamic+lock": dynamic}}


def sample_page() -> str:
    trades = sample_trades()
    report = {
        "open": 3,
        "closed": len(trades),
        "methods": {DYNAMIC: sum(t.method == DYNAMIC for t in trades), FIXED: 210},
        "fallback_reasons": {"not_in_rollout": 120, "disabled": 61, "no_atr": 7, "stale_atr": 22},
        "trades": [],
    }
    status = rollout_status(SETTINGS, trades)
    comparison = compare(SETTINGS, trades, backtest_summary())
    return render(report, status, trades, comparison, datetime(2024, 3, 1, tzinfo=UTC))
