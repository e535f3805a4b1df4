"""Constructed live trades with known metrics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from traild.core.calculator import DYNAMIC, FIXED
from traild.reporting.live import LiveTrade

EURUSD = "CS.D.EURUSD.MINI.IP"
GBPUSD = "CS.D.GBPUSD.MINI.IP"
DAY0 = date(2024, 3, 1)


def arm(
    method: str,
    pnls: Sequence[float],
    epic: str = EURUSD,
    first_day: int = 0,
    mfe: float | None = None,
    lock_minutes: float | None = None,
) -> list[LiveTrade]:
    """One trade per day from ``first_day`` on."""
    return [
        LiveTrade(
            epic,
            method,
            p,
            DAY0 + timedelta(days=first_day + i),
            mfe,
            lock_minutes is not None,
            lock_minutes,
        )
        for i, p in enumerate(pnls)
    ]


def dyn(pnls: Sequence[float], **kw: object) -> list[LiveTrade]:
    return arm(DYNAMIC, pnls, **kw)  # type: ignore[arg-type]


def fix(pnls: Sequence[float], **kw: object) -> list[LiveTrade]:
    return arm(FIXED, pnls, first_day=100, **kw)  # type: ignore[arg-type]
