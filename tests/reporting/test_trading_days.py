"""One trading day for live reports and the backtest: 21:00 UTC roll, by the trade's entry."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from traild.backtest.claims import trading_day as backtest_day
from traild.core.calculator import DYNAMIC
from traild.core.instruments import InstrumentTable
from traild.core.messages import Direction, TradeRecord, TradeStatus
from traild.core.tradingday import trading_day, trading_day_number
from traild.reporting.live import live_trades

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _closed(opened: datetime, closed: datetime) -> TradeRecord:
    return TradeRecord(
        "D1",
        "CS.D.EURUSD.MINI.IP",
        Direction.BUY,
        entry_price=1.1,
        status=TradeStatus.CLOSED,
        opened_at=opened,
        closed_at=closed,
        pnl_pips=3.0,
        trailing_calculation_method=DYNAMIC,
    )


def _live_day(opened: datetime, closed: datetime) -> date:
    (trade,) = live_trades([_closed(opened, closed)], InstrumentTable(), 10.0)
    return trade.day


def test_a_trade_opened_after_the_roll_belongs_to_the_next_day_live_as_in_the_backtest() -> None:
    opened = datetime(2024, 3, 4, 22, 30, tzinfo=UTC)  # Monday 22:30 UTC: Tuesday's session
    closed = datetime(2024, 3, 4, 23, 10, tzinfo=UTC)  # closed the same UTC date
    assert _live_day(opened, closed) == date(2024, 3, 5)
    ms = (opened - EPOCH) // timedelta(milliseconds=1)
    assert EPOCH.date() + timedelta(days=backtest_day(ms)) == date(2024, 3, 5)


def test_a_trade_is_grouped_by_its_entry_not_its_close() -> None:
    opened = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)  # Monday
    closed = datetime(2024, 3, 5, 9, 0, tzinfo=UTC)  # held overnight
    assert _live_day(opened, closed) == date(2024, 3, 4)


def test_sunday_evenings_open_belongs_to_monday() -> None:
    assert trading_day(datetime(2024, 3, 3, 21, 0, tzinfo=UTC)) == date(2024, 3, 4)
    assert trading_day(datetime(2024, 3, 3, 20, 59, 59, 999000, tzinfo=UTC)) == date(2024, 3, 3)


@pytest.mark.parametrize("minutes", range(0, 48 * 60, 37))
def test_the_date_and_the_day_number_are_the_same_definition_in_any_zone(minutes: int) -> None:
    instant = datetime(2024, 3, 3, tzinfo=UTC) + timedelta(minutes=minutes)
    ms = (instant - EPOCH) // timedelta(milliseconds=1)
    for zone in (UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))):
        day = trading_day(instant.astimezone(zone))
        assert day == EPOCH.date() + timedelta(days=trading_day_number(ms))


def test_a_naive_time_has_no_trading_day() -> None:
    with pytest.raises(ValueError, match="naive"):
        trading_day(datetime(2024, 3, 4, 12, 0))
