"""The trailing ladder by example (SPEC §2): exact triggers, rungs, caps, steps, exits."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from traild.core.calculator import StageConfig
from traild.core.instruments import Instrument, InstrumentTable
from traild.core.ladder import Exit, Ladder, LadderPlan, LadderPolicy
from traild.core.messages import Direction, MoveStop, Reason

BUY, SELL = Direction.BUY, Direction.SELL
REGULAR = StageConfig(
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
DEFAULT_POLICY = LadderPolicy()


@dataclass
class Trade:
    """A ladder plus the instrument, driven in pips from entry (positive = favourable)."""

    ladder: Ladder
    inst: Instrument
    direction: Direction
    entry: int
    spread: int = 0

    def px(self, pips: float) -> int:
        """The exit-side price ``pips`` from entry in the trade's favour, in ticks."""
        return self.entry + self.direction.sign * round(pips * self.inst.ticks_per_pip)

    def at(self, pips: float) -> MoveStop | Exit | None:
        """Feed a tick whose exit-side price is ``pips`` from entry."""
        return self.at_ticks(self.px(pips))

    def at_ticks(self, exit_side: int) -> MoveStop | Exit | None:
        if self.direction is BUY:
            return self.ladder.on_tick(exit_side, exit_side + self.spread)
        return self.ladder.on_tick(exit_side - self.spread, exit_side)

    def price(self, ticks: int | None) -> float | None:
        return None if ticks is None else self.inst.to_price(ticks)


def trade(
    direction: Direction = BUY,
    entry: str = "1.10000",
    epic: str = "EURUSD",
    stop_pips: float | None = 20,
    limit_pips: float | None = None,
    stages: StageConfig = REGULAR,
    policy: LadderPolicy = DEFAULT_POLICY,
    atr_pips: float | None = None,
    best_pips: float | None = None,
    spread: int = 0,
) -> Trade:
    inst = InstrumentTable().resolve(epic)
    e = inst.to_ticks(entry)
    plan = LadderPlan.compile(stages, inst, policy, atr_pips)
    t = Trade(Ladder(plan, direction, e), inst, direction, e, spread)
    stop = None if stop_pips is None else t.px(-stop_pips)
    limit = None if limit_pips is None else t.px(limit_pips)
    best = None if best_pips is None else t.px(best_pips)
    t.ladder = Ladder(plan, direction, e, stop, limit, best)
    return t


def move(event: MoveStop | Exit | None) -> MoveStop:
    assert isinstance(event, MoveStop), event
    return event


def apply(t: Trade, pips: float) -> MoveStop:
    """Feed a tick that must move the stop, and confirm the move."""
    m = move(t.at(pips))
    t.ladder.confirm(m.level)
    return m


# -- exact triggers -------------------------------------------------------------------------------
def test_buy_from_1_10000_locks_profit_at_bid_1_10100_exactly() -> None:
    t = trade(BUY, "1.10000")
    assert t.ladder.on_tick(t.inst.to_ticks("1.10099"), t.inst.to_ticks("1.10110")) is None
    m = move(t.ladder.on_tick(t.inst.to_ticks("1.10100"), t.inst.to_ticks("1.10111")))
    assert t.price(m.level) == 1.10010
    assert m.reason is Reason.PROFIT_LOCK and m.priority


def test_sell_from_1_10000_locks_profit_at_ask_1_09900_exactly() -> None:
    t = trade(SELL, "1.10000")
    assert t.ladder.on_tick(t.inst.to_ticks("1.09890"), t.inst.to_ticks("1.09901")) is None
    m = move(t.ladder.on_tick(t.inst.to_ticks("1.09889"), t.inst.to_ticks("1.09900")))
    assert t.price(m.level) == 1.09990
    assert m.reason is Reason.PROFIT_LOCK


@pytest.mark.parametrize(
    ("direction", "before", "at", "lock"),
    [(BUY, "150.099", "150.100", 150.010), (SELL, "149.901", "149.900", 149.990)],
)
def test_jpy_profit_lock_fires_at_exactly_ten_pips(
    direction: Direction, before: str, at: str, lock: float
) -> None:
    t = trade(direction, "150.000", epic="CS.D.USDJPY.MINI.IP")
    assert t.at_ticks(t.inst.to_ticks(before)) is None
    m = move(t.at_ticks(t.inst.to_ticks(at)))
    assert t.price(m.level) == lock and m.reason is Reason.PROFIT_LOCK


def test_buy_is_valued_on_the_bid_not_the_ask() -> None:
    t = trade(BUY)
    # ask 12 pips up, bid 9.9 pips up: MFE is 9.9 pips, no lock
    assert t.ladder.on_tick(t.px(9.9), t.px(12)) is None
    assert t.ladder.mfe == 99


def test_sell_is_valued_on_the_ask_not_the_bid() -> None:
    t = trade(SELL)
    # bid 12 pips down, ask 9.9 pips down
    assert t.ladder.on_tick(t.px(12), t.px(9.9)) is None
    assert t.ladder.mfe == 99


def test_fractional_trigger_fires_at_the_first_tick_at_or_beyond_it() -> None:
    t = trade(policy=LadderPolicy(profit_lock_trigger_pips=10.05))
    assert t.at(10.0) is None  # 100 ticks < 100.5
    assert move(t.at(10.1)).reason is Reason.PROFIT_LOCK


# -- every rung ------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", [BUY, SELL])
def test_each_rung_moves_the_stop_to_its_level_with_its_reason(direction: Direction) -> None:
    t = trade(direction)
    expected = [
        (10, 1, Reason.PROFIT_LOCK),
        (15, 2, Reason.EARLY_BE),
        (20, 8, Reason.STAGE1),
        (30, 15, Reason.STAGE2),
        (40, 30, Reason.STAGE3),
        (45, 35, Reason.STAGE3),
    ]
    for mfe, lock, reason in expected:
        m = apply(t, mfe)
        assert (m.level, m.reason) == (t.px(lock), reason), mfe
        assert m.priority is (reason is not Reason.STAGE3)
    assert t.ladder.stop == t.px(35)


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_between_rungs_nothing_is_sent(direction: Direction) -> None:
    t = trade(direction)
    apply(t, 10)
    for pips in (10.5, 12, 14.9, 9, 3):
        assert t.at(pips) is None


def test_without_the_profit_lock_the_first_move_is_early_break_even() -> None:
    t = trade(policy=LadderPolicy(profit_lock=False))
    assert t.at(10) is None and t.at(14.9) is None
    m = move(t.at(15))
    assert (m.level, m.reason) == (t.px(2), Reason.EARLY_BE)


def test_a_jump_past_every_rung_sends_one_amendment_at_the_highest_floor() -> None:
    t = trade(SELL)
    m = move(t.at(50))
    assert (m.level, m.reason) == (t.px(40), Reason.STAGE3)
    t.ladder.confirm(m.level)
    assert t.at(49) is None


def test_a_jump_between_stage2_and_stage3_sends_the_stage2_lock() -> None:
    t = trade()
    m = move(t.at(35))
    assert (m.level, m.reason) == (t.px(15), Reason.STAGE2)


def test_stage3_never_pulls_the_stop_below_a_higher_lock() -> None:
    stages = replace(REGULAR, stage3_min_distance=30)  # stage3 at +40 would sit at +10 < +15
    t = trade(stages=stages)
    apply(t, 30)
    assert t.at(40) is None
    m = move(t.at(45.5))
    assert (m.level, m.reason) == (t.px(15.5), Reason.STAGE3)


# -- rounding towards the market ----------------------------------------------------------------
@pytest.mark.parametrize("direction", [BUY, SELL])
def test_a_fractional_lock_is_rounded_towards_the_market(direction: Direction) -> None:
    stages = replace(REGULAR, early_be_buffer=1.55)  # 15.5 ticks
    t = trade(direction, stages=stages, policy=LadderPolicy(profit_lock=False))
    m = move(t.at(15))
    assert m.level == t.entry + direction.sign * 16


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_stage3_distance_is_the_larger_of_minimum_and_atr_multiple(direction: Direction) -> None:
    t = trade(direction, atr_pips=12.345)  # D = 12.35 pips = 123.5 ticks
    m = move(t.at(50))
    # rounded towards the market: 123 ticks behind the best price, not 124
    assert m.level == t.px(50) - direction.sign * 123
    assert m.reason is Reason.STAGE3


def test_stage3_distance_uses_the_minimum_when_the_atr_multiple_is_smaller() -> None:
    t = trade(atr_pips=5.0)
    assert move(t.at(50)).level == t.px(40)


def test_stage3_distance_without_atr_is_the_minimum_distance() -> None:
    stages = replace(REGULAR, stage3_atr_multiplier=3.0)
    assert move(trade(stages=stages).at(50)).level == trade().px(40)


# -- broker minimum distance ----------------------------------------------------------------------
@pytest.mark.parametrize("direction", [BUY, SELL])
def test_min_distance_caps_a_floor_too_close_to_the_market(direction: Direction) -> None:
    t = trade(direction, policy=LadderPolicy(min_stop_distance_pips=12))
    m = move(t.at(10))  # lock E+1, but the stop may not be closer than 12 pips: E-2
    assert (m.level, m.reason) == (t.px(-2), Reason.PROFIT_LOCK)


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_capped_level_is_rounded_away_from_the_market(direction: Direction) -> None:
    t = trade(direction, policy=LadderPolicy(min_stop_distance_pips=11.55))
    m = move(t.at(10))  # 11.55 pips = 115.5 ticks -> 116 ticks away from the bid
    assert m.level == t.px(10) - direction.sign * 116


def test_no_send_when_the_capped_value_does_not_improve_and_retry_later() -> None:
    t = trade(BUY, policy=LadderPolicy(min_stop_distance_pips=12), best_pips=12)
    # restarted with a persisted best of +12: the lock E+1 is owed
    m = move(t.at(5))  # capped at E-7
    assert m.level == t.px(-7)
    t.ladder.confirm(m.level)
    assert t.at(4) is None  # cap E-8 does not improve E-7: nothing now
    m = move(t.at(14))  # no new best, but now the cap allows the whole floor
    assert (m.level, m.reason) == (t.px(1), Reason.PROFIT_LOCK)


def test_the_stop_is_never_sent_at_the_exit_price_even_without_a_min_distance() -> None:
    stages = replace(REGULAR, stage3_trigger=40, stage3_min_distance=0.05)  # half a tick
    t = trade(stages=stages)
    m = move(t.at(45))
    assert m.level == t.px(45) - 1  # at least one tick away


# -- minimum step -------------------------------------------------------------------------------
def _stage3_trade(direction: Direction = BUY, step: float = 0.5) -> Trade:
    stages = replace(REGULAR, stage3_trigger=40)
    t = trade(direction, stages=stages, policy=LadderPolicy(min_amend_step_pips=step))
    apply(t, 40)  # stage3 at E+30
    return t


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_stage3_moves_below_the_minimum_step_are_not_sent(direction: Direction) -> None:
    t = _stage3_trade(direction)
    assert t.at(40.1) is None
    assert t.at(40.4) is None
    m = move(t.at(40.5))  # 0.5 pip is enough
    assert m.level == t.px(30.5)


def test_stage3_steps_accumulate_from_the_confirmed_stop() -> None:
    t = _stage3_trade(step=2.0)
    for pips in (40.5, 41.0, 41.5, 41.9):
        assert t.at(pips) is None
    assert move(t.at(42)).level == t.px(32)


def test_a_new_rung_is_sent_even_when_it_improves_by_less_than_the_step() -> None:
    t = trade(BUY, policy=LadderPolicy(min_amend_step_pips=5))
    t.ladder.confirm(t.px(0.8))  # the stop already sits at E+0.8
    m = move(t.at(10))
    assert (m.level, m.reason) == (t.px(1), Reason.PROFIT_LOCK)


def test_zero_minimum_step_sends_every_stage3_tick() -> None:
    t = _stage3_trade(step=0.0)
    assert move(t.at(40.1)).level == t.px(30.1)


# -- exits ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", [BUY, SELL])
def test_stop_exit_at_the_stop_level_is_not_a_gap(direction: Direction) -> None:
    t = trade(direction)
    e = t.at(-20)
    assert e == Exit(t.px(-20), "stop", False, t.px(-20))
    assert t.ladder.closed


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_stop_exit_through_the_stop_fills_at_the_tick_price_as_a_gap(
    direction: Direction,
) -> None:
    t = trade(direction)
    assert t.at(-25) == Exit(t.px(-25), "stop", True, t.px(-20))


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_limit_exit_at_and_through_the_limit(direction: Direction) -> None:
    t = trade(direction, limit_pips=12)
    assert t.at(11.9) is not None  # the profit lock at +10
    t.ladder.confirm(t.px(1))
    assert t.at(12) == Exit(t.px(12), "limit", False, t.px(12))
    t = trade(direction, limit_pips=12)
    assert t.at(13) == Exit(t.px(13), "limit", True, t.px(12))


def test_a_buy_stop_is_triggered_by_the_bid_even_when_the_ask_is_above() -> None:
    t = trade(BUY, spread=30)
    assert isinstance(t.at(-20), Exit)


def test_a_sell_stop_is_triggered_by_the_ask() -> None:
    t = trade(SELL)
    # the bid is through the stop level but the ask is not: still open
    assert t.ladder.on_tick(t.px(-25), t.px(-19.9)) is None
    assert isinstance(t.ladder.on_tick(t.px(-25), t.px(-20)), Exit)


def test_exit_is_checked_before_the_stop_would_be_raised() -> None:
    # Restarted with a persisted best of +35: the stage2 lock (E+15) is owed but not placed.
    # A tick through the old stop exits at the old stop; nothing is sent.
    t = trade(BUY, best_pips=35)
    e = t.at(-21)
    assert e == Exit(t.px(-21), "stop", True, t.px(-20))


def test_a_tick_that_reaches_the_limit_and_a_new_rung_exits_by_limit() -> None:
    t = trade(BUY, limit_pips=10)
    assert t.at(10) == Exit(t.px(10), "limit", False, t.px(10))


def test_a_pending_unconfirmed_stop_does_not_close_the_trade() -> None:
    t = trade(BUY)
    move(t.at(10))  # E+1 requested, not confirmed
    assert t.at(0.5) is None
    assert t.ladder.stop == t.px(-20) and t.ladder.pending == t.px(1)
    assert isinstance(t.at(-20), Exit)


def test_a_closed_ladder_ignores_further_ticks() -> None:
    t = trade(BUY)
    assert isinstance(t.at(-20), Exit)
    assert t.at(50) is None and t.at(-50) is None


def test_a_confirmed_stop_is_effective_from_the_next_tick() -> None:
    t = trade(BUY)
    apply(t, 10)
    assert t.at(1.1) is None
    assert t.at(1) == Exit(t.px(1), "stop", False, t.px(1))


def test_removing_the_limit_stops_limit_exits() -> None:
    t = trade(BUY, limit_pips=12)
    t.ladder.set_limit(None)
    assert isinstance(t.at(13), MoveStop)


# -- confirm / reject ------------------------------------------------------------------------------
def test_a_pending_amendment_is_not_sent_twice() -> None:
    t = trade(BUY)
    move(t.at(10))
    for pips in (10, 10.2, 9.5, 10.3):
        assert t.at(pips) is None


def test_a_higher_floor_while_pending_is_sent_over_the_pending_one() -> None:
    t = trade(BUY)
    move(t.at(10))
    m = move(t.at(15))
    assert (m.level, m.reason) == (t.px(2), Reason.EARLY_BE)


def test_a_rejected_amendment_is_retried_on_the_next_tick_without_a_new_best() -> None:
    t = trade(BUY)
    first = move(t.at(10))
    t.ladder.reject()
    assert t.ladder.pending is None
    again = move(t.at(9))
    assert again.level == first.level


def test_confirming_a_lower_level_never_loosens_the_stop() -> None:
    t = trade(BUY)
    apply(t, 20)  # stop E+8
    t.ladder.confirm(t.px(1))
    assert t.ladder.stop == t.px(8)
    t.ladder.confirm(t.px(-50))
    assert t.ladder.stop == t.px(8)


def test_confirming_a_lower_level_on_a_sell_never_loosens_the_stop() -> None:
    t = trade(SELL)
    apply(t, 20)
    t.ladder.confirm(t.px(1))
    assert t.ladder.stop == t.px(8)


def test_confirm_clears_the_pending_amendment_it_satisfies() -> None:
    t = trade(BUY)
    m = move(t.at(10))
    t.ladder.confirm(m.level)
    assert (t.ladder.stop, t.ladder.pending) == (m.level, None)


def test_restart_from_a_persisted_best_recomputes_the_floor_on_the_first_tick() -> None:
    t = trade(SELL, best_pips=32)
    m = move(t.at(25))
    assert (m.level, m.reason) == (t.px(15), Reason.STAGE2)
    assert t.ladder.best == t.px(32)


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_a_trade_without_a_stop_gets_its_first_floor(direction: Direction) -> None:
    # (the origin system compared ``sl_price or 0.0``: a SELL without a stop never moved)
    t = trade(direction, stop_pips=None)
    assert t.at(-100) is None  # nothing to be stopped by
    m = move(t.at(10))
    assert (m.level, m.reason, m.priority) == (t.px(1), Reason.PROFIT_LOCK, True)
    t.ladder.confirm(m.level)
    assert t.ladder.stop == t.px(1)


# -- the origin study's sample (seed_origin §5), where the semantics agree ---------------------
# EURUSD regular seed row: early BE 6 -> +2, break-even/stage1 9 -> +5, stage2 14 -> +8,
# stage3 from 20 at 6 pips. traild has no separate break-even step and trails at a fixed
# distance instead of a percentage, so the sample agrees up to the first stage-3 move (+20).
SEED_ROW = StageConfig(
    early_be_trigger=6,
    early_be_buffer=2,
    stage1_trigger=9,
    stage1_lock=5,
    stage2_trigger=14,
    stage2_lock=8,
    stage3_trigger=20,
    stage3_atr_multiplier=0.0,
    stage3_min_distance=6,
)


def test_origin_sample_buy_eurusd_amendments_up_to_the_first_stage3_move() -> None:
    t = trade(BUY, "1.10000", stop_pips=10, stages=SEED_ROW)
    got = []
    for pips in (3, 7, 5, 9, 8, 12, 14, 11, 20):
        event = t.at(pips)
        if isinstance(event, MoveStop):
            t.ladder.confirm(event.level)
            got.append((pips, t.price(event.level)))
    assert got == [(7, 1.10020), (9, 1.10050), (14, 1.10080), (20, 1.10140)]


def test_origin_sample_sell_usdjpy_mirrored() -> None:
    t = trade(SELL, "150.000", epic="USDJPY", stop_pips=10, stages=SEED_ROW)
    got = []
    for pips in (7, 9, 14, 20):
        m = apply(t, pips)
        got.append(t.price(m.level))
    assert got == [149.980, 149.950, 149.920, 149.860]


# -- regressions found by the properties ----------------------------------------------------------
LOW_RUNGS = StageConfig(
    early_be_trigger=3,
    early_be_buffer=0.5,
    stage1_trigger=4,
    stage1_lock=0.6,
    stage2_trigger=5,
    stage2_lock=0.7,
    stage3_trigger=6,
    stage3_atr_multiplier=0.0,
    stage3_min_distance=10.3,
)


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_a_stage3_move_that_puts_the_profit_lock_in_place_is_sent_below_the_step(
    direction: Direction,
) -> None:
    # The stop sits at E+0.8 (set by the trading app before adoption). A jump to +11.5 reaches
    # the profit lock (E+1) and stage 3 (11.5 - 10.3 = E+1.2): +0.4 pip is below the 0.5 step,
    # but the move puts the profit lock in place, so it must be sent.
    t = trade(direction, stages=LOW_RUNGS)
    t.ladder.confirm(t.px(0.8))
    m = move(t.at(11.5))
    assert (m.level, m.reason, m.priority) == (t.px(1.2), Reason.STAGE3, True)
    t.ladder.confirm(m.level)
    exit_ = t.at(0.8)  # stopped at the new level, at or beyond the lock, not at E+0.8
    assert isinstance(exit_, Exit) and exit_.level == t.px(1.2)


@pytest.mark.parametrize("direction", [BUY, SELL])
def test_a_capped_move_that_reaches_the_profit_lock_is_sent_below_the_step(
    direction: Direction,
) -> None:
    # Minimum distance 14.5 pips: at +15.1 the floors (E+1 lock, E+2 early BE) are capped at
    # E+0.6. At +15.5 the cap is E+1.0: only 0.4 pip better, but it is the profit lock.
    t = trade(direction, policy=LadderPolicy(min_stop_distance_pips=14.5))
    assert apply(t, 15.1).level == t.px(0.6)
    m = move(t.at(15.5))
    assert (m.level, m.reason) == (t.px(1.0), Reason.EARLY_BE)
    t.ladder.confirm(m.level)
    exit_ = t.at(0.6)
    assert isinstance(exit_, Exit) and exit_.level == t.px(1.0)


def test_a_capped_move_that_reaches_no_new_rung_still_needs_the_step() -> None:
    t = trade(BUY, policy=LadderPolicy(min_stop_distance_pips=14.5))
    apply(t, 15.6)  # capped at E+1.1 (the lock is in place)
    assert t.at(15.9) is None  # E+1.4: +0.3, below the step, no rung crossed
    assert move(t.at(16.5)).level == t.px(2.0)  # the early BE rung, reached by the cap
