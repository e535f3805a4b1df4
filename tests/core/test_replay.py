"""run_trade: one trade over ticks with immediate confirmation, effective from the next tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from traild.core.calculator import StageConfig
from traild.core.instruments import InstrumentTable
from traild.core.ladder import Ladder, LadderPlan, LadderPolicy
from traild.core.messages import Direction, Reason
from traild.core.replay import pnl_ticks, run_trade

INST = InstrumentTable().resolve("EURUSD")
STAGES = StageConfig(
    early_be_trigger=15,
    early_be_buffer=2,
    stage1_trigger=20,
    stage1_lock=8,
    stage2_trigger=30,
    stage2_lock=15,
    stage3_trigger=40,
    stage3_atr_multiplier=1.0,
    stage3_min_distance=10,
)
ENTRY = 110_000
T0 = datetime(2014, 5, 1, tzinfo=UTC)
LOCK_TRIGGER = 1000 * INST.ticks_per_pip  # 10 pips in centipips x ticks per pip


def ladder(direction: Direction, limit_pips: float | None = None) -> Ladder:
    plan = LadderPlan.compile(STAGES, INST, LadderPolicy())
    s = direction.sign
    limit = None if limit_pips is None else ENTRY + s * round(limit_pips * 10)
    return Ladder(plan, direction, ENTRY, ENTRY - s * 200, limit)


def path(direction: Direction, pips: list[float]) -> list[tuple[datetime, int, int]]:
    """Ticks at one-second intervals whose exit-side price is ``pips`` from entry; spread 1."""
    out = []
    for i, p in enumerate(pips):
        x = ENTRY + direction.sign * round(p * 10)
        bid, ask = (x, x + 10) if direction is Direction.BUY else (x - 10, x)
        out.append((T0 + timedelta(seconds=i), bid, ask))
    return out


def test_amendments_are_confirmed_at_once_and_effective_from_the_next_tick() -> None:
    out = run_trade(ladder(Direction.BUY), path(Direction.BUY, [5, 10, 1.5, 0.5]), LOCK_TRIGGER)
    assert [(a.ts, a.old, a.new, a.reason) for a in out.amendments] == [
        (T0 + timedelta(seconds=1), ENTRY - 200, ENTRY + 10, Reason.PROFIT_LOCK)
    ]
    assert (out.exit_reason, out.exit_price, out.exit_stop, out.gap) == (
        "stop",
        ENTRY + 5,
        ENTRY + 10,
        True,
    )
    assert out.exit_ts == T0 + timedelta(seconds=3)
    assert out.lock_ts == T0 + timedelta(seconds=1)
    assert pnl_ticks(Direction.BUY, ENTRY, ENTRY + 5) == 5


def test_a_sell_walks_the_ladder_mirrored() -> None:
    out = run_trade(
        ladder(Direction.SELL), path(Direction.SELL, [10, 15, 20, 30, 45, 34]), LOCK_TRIGGER
    )
    assert [(a.new, a.reason) for a in out.amendments] == [
        (ENTRY - 10, Reason.PROFIT_LOCK),
        (ENTRY - 20, Reason.EARLY_BE),
        (ENTRY - 80, Reason.STAGE1),
        (ENTRY - 150, Reason.STAGE2),
        (ENTRY - 350, Reason.STAGE3),
    ]
    assert (out.exit_reason, out.exit_price, out.exit_stop) == ("stop", ENTRY - 340, ENTRY - 350)
    assert out.best == ENTRY - 450


def test_end_of_data_closes_at_the_last_exit_side_price() -> None:
    out = run_trade(ladder(Direction.SELL), path(Direction.SELL, [3, 4, 2]), LOCK_TRIGGER)
    assert (out.exit_reason, out.exit_price, out.gap) == ("end_of_data", ENTRY - 20, False)
    assert out.exit_stop == ENTRY + 200
    assert out.lock_ts is None
    assert out.ticks_seen == 3


def test_a_limit_exit_reports_the_confirmed_stop_not_the_limit_as_exit_stop() -> None:
    out = run_trade(ladder(Direction.BUY, limit_pips=12), path(Direction.BUY, [10, 13]))
    assert (out.exit_reason, out.exit_price, out.gap) == ("limit", ENTRY + 130, True)
    assert out.exit_stop == ENTRY + 10  # the stop in force, for trades.csv exit_stop


def test_no_ticks_is_end_of_data_without_a_price() -> None:
    out = run_trade(ladder(Direction.BUY), [])
    assert (out.exit_reason, out.exit_price, out.exit_ts, out.ticks_seen) == (
        "end_of_data",
        None,
        None,
        0,
    )


def test_lock_time_is_recorded_even_when_the_lock_is_disabled() -> None:
    plan = LadderPlan.compile(STAGES, INST, LadderPolicy(profit_lock=False))
    lad = Ladder(plan, Direction.BUY, ENTRY, ENTRY - 200)
    out = run_trade(lad, path(Direction.BUY, [3, 10, 2]), LOCK_TRIGGER)
    assert out.lock_ts == T0 + timedelta(seconds=1)
    assert out.amendments == ()
