"""The trading day, one definition for live reports and the backtest.

An FX trading day runs from 21:00 UTC (the New York 17:00 roll-over) to 21:00 UTC the next
day and is named by the date it ends on, so Sunday evening's open belongs to Monday. A trade
belongs to the trading day of its entry. Intervals that resample whole days (the rollout gate,
the backtest's claims) use this, so live and backtest group the same trades the same way.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

ROLL_HOUR_UTC = 21
DAY_MS = 86_400_000
_SHIFT_MS = (24 - ROLL_HOUR_UTC) * 3_600_000  # 21:00 UTC + 3 h = the next date's 00:00
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def trading_day_number(ts_ms: int) -> int:
    """The trading day of an epoch-millisecond time, as days since 1970-01-01."""
    return (ts_ms + _SHIFT_MS) // DAY_MS


def trading_day(ts: datetime) -> date:
    """The trading day of an aware time (any zone), as the date it ends on."""
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts.isoformat()} (need timezone-aware)")
    return _EPOCH.date() + timedelta(days=trading_day_number((ts - _EPOCH) // _MS))
