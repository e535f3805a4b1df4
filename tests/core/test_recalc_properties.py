"""Real-time recalculation never loosens a stop nor un-reaches a rung (hypothesis).

A trade trails on stages from the calculator; at random ticks the volatility regime jumps
(up or down, by any number of levels) and ``DynamicTrailingCalculator.recalculate`` produces
new stages that the ladder adopts mid-trade. Checked at every tick: the confirmed stop never
moves against the trade, the floor owed after a switch is at least the floor earned before
it, no stop is sent on the wrong side of the exit price, and a recalculation happens exactly
when the regime moved ``shift`` levels or more from the one the current stages used.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from traild.core.calculator import (
    REGIMES,
    CalculatedStages,
    CalculatorParams,
    DynamicTrailingCalculator,
    MarketConditions,
    StageConfig,
    regime_shift,
)
from traild.core.instruments import InstrumentTable
from traild.core.ladder import Exit, Ladder, LadderPlan, LadderPolicy
from traild.core.messages import Direction, MoveStop

INST = InstrumentTable().resolve("EURUSD")
TPP = INST.ticks_per_pip
ENTRY = 1_100_000
BASE = StageConfig(15, 2, 20, 8, 30, 15, 40, 1.0, 10)
CALC = DynamicTrailingCalculator(CalculatorParams(enable_dynamic_trailing=True, atr_clamp="ladder"))


@dataclass(frozen=True)
class Path:
    direction: Direction
    atr: float
    shift: int
    start: str
    offsets: tuple[int, ...]  # exit-side offset from entry in the trade's favour, ticks
    regimes: tuple[str | None, ...]  # the regime measured at each tick (None: no bar closed)
    confirm: tuple[bool, ...]
    policy: LadderPolicy


@st.composite
def paths(draw: st.DrawFn) -> Path:
    n = draw(st.integers(5, 120))
    steps = draw(st.lists(st.integers(-30, 45), min_size=n, max_size=n))
    x, offsets = 0, []
    for dx in steps:
        x += dx
        offsets.append(x)
    regime = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(REGIMES))
    return Path(
        direction=draw(st.sampled_from([Direction.BUY, Direction.SELL])),
        atr=draw(st.integers(20, 300)) / 10,
        shift=draw(st.integers(1, 3)),
        start=draw(st.sampled_from(REGIMES)),
        offsets=tuple(offsets),
        regimes=tuple(draw(st.lists(regime, min_size=n, max_size=n))),
        confirm=tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        policy=LadderPolicy(
            min_amend_step_pips=draw(st.sampled_from([0.0, 0.5, 2.0])),
            min_stop_distance_pips=draw(st.sampled_from([0.0, 0.0, 3.0])),
        ),
    )


def _conditions(p: Path, regime: str) -> MarketConditions:
    return MarketConditions("CS.D.EURUSD.MINI.IP", p.atr, regime, "london")


def _plan(stages: CalculatedStages, p: Path) -> LadderPlan:
    return LadderPlan.compile(stages.stages, INST, p.policy, stages.atr_pips)


@settings(max_examples=120, deadline=None)
@given(paths())
def test_recalculation_never_loosens_a_stop_nor_unreaches_a_rung(p: Path) -> None:
    s = p.direction.sign
    stages = CALC.calculate_stages(_conditions(p, p.start), BASE)
    assert stages.volatility_regime == p.start
    ladder = Ladder(_plan(stages, p), p.direction, ENTRY, ENTRY - s * 200)
    confirmed = -200  # directional offset of the confirmed stop
    earned = -(1 << 62)  # the highest floor any plan has owed so far
    recalcs = 0
    for off, measured, ok in zip(p.offsets, p.regimes, p.confirm, strict=True):
        x = ENTRY + s * off
        event = ladder.on_tick(x, x)
        if isinstance(event, Exit):
            assert s * (event.level - ENTRY) == confirmed
            break
        if isinstance(event, MoveStop):
            level = s * (event.level - ENTRY)
            assert level > confirmed and level < off  # tighter, and never through the market
            if ok:
                ladder.confirm(event.level)
            else:
                ladder.reject()
        now = s * (ladder.stop - ENTRY) if ladder.stop is not None else confirmed
        assert now >= confirmed  # the confirmed stop never loosens
        confirmed = now
        mfe = ladder.mfe
        assert mfe is not None
        owed, _ = ladder.plan.floor(mfe)
        assert owed >= earned  # a floor once owed stays owed, whatever the plan
        earned = max(earned, owed)
        if measured is None:
            continue
        new = CALC.recalculate(stages, _conditions(p, measured), BASE, shift=p.shift)
        moved = regime_shift(stages.volatility_regime, measured) >= p.shift
        assert (new is not None) == moved
        if new is not None:
            recalcs += 1
            before, _ = ladder.plan.floor(mfe)
            ladder.recalculated(_plan(new, p))
            after, _ = ladder.plan.floor(mfe)
            assert after >= before  # rungs reached stay reached
            stages = new
    assert recalcs <= len(p.offsets)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(REGIMES), st.sampled_from(REGIMES), st.integers(1, 3))
def test_recalculate_fires_exactly_at_the_configured_shift(old: str, new: str, shift: int) -> None:
    current = CALC.calculate_stages(MarketConditions("EURUSD", 8.0, old, "asian"), BASE)
    result = CALC.recalculate(
        current, MarketConditions("EURUSD", 8.0, new, "asian"), BASE, shift=shift
    )
    distance = abs(REGIMES.index(old) - REGIMES.index(new))
    assert (result is not None) == (distance >= shift)
    if result is not None:
        assert result.volatility_regime == new
        assert result == CALC.calculate_stages(MarketConditions("EURUSD", 8.0, new, "asian"), BASE)


def _ladder(stages: StageConfig, direction: Direction = Direction.BUY) -> Ladder:
    plan = LadderPlan.compile(stages, INST, LadderPolicy(), None)
    return Ladder(plan, direction, ENTRY, ENTRY - direction.sign * 200)


def test_a_wider_plan_keeps_the_stage1_floor_already_earned_but_unconfirmed() -> None:
    ladder = _ladder(BASE)
    move = ladder.on_tick(ENTRY + 21 * TPP, ENTRY + 21 * TPP)  # MFE 21: stage 1 (lock 8)
    assert isinstance(move, MoveStop) and move.level == ENTRY + 8 * TPP
    ladder.reject()  # the broker refused: the floor is still owed
    wide = StageConfig(24, 3.2, 32, 12.8, 48, 24, 64, 1.0, 16)  # extreme: x1.6
    ladder.recalculated(LadderPlan.compile(wide, INST, LadderPolicy(), None))
    again = ladder.on_tick(ENTRY + 20 * TPP, ENTRY + 20 * TPP)
    assert isinstance(again, MoveStop) and again.level == ENTRY + 8 * TPP  # not un-reached


def test_a_tighter_plan_puts_its_newly_reached_rungs_in_place_from_the_next_tick() -> None:
    ladder = _ladder(BASE, Direction.SELL)
    assert ladder.on_tick(ENTRY - 12 * TPP, ENTRY - 12 * TPP) is not None  # profit lock
    ladder.confirm(ENTRY - 1 * TPP)
    tight = StageConfig(10.5, 1.4, 14, 5.6, 21, 10.5, 28, 1.0, 7)  # low: x0.7
    ladder.recalculated(LadderPlan.compile(tight, INST, LadderPolicy(), None))
    move = ladder.on_tick(ENTRY - 11 * TPP, ENTRY - 11 * TPP)
    assert isinstance(move, MoveStop) and move.level == ENTRY - 14  # early BE buffer 1.4 pips


def test_a_trade_trailing_in_stage3_keeps_trailing_at_the_new_distance() -> None:
    ladder = _ladder(BASE)  # stage 3 from +40, 10 pips behind
    for pips in (41, 45):
        move = ladder.on_tick(ENTRY + pips * TPP, ENTRY + pips * TPP)
        assert isinstance(move, MoveStop)
        ladder.confirm(move.level)
    assert ladder.stop == ENTRY + 35 * TPP
    wide = StageConfig(24, 3.2, 32, 12.8, 48, 24, 64, 1.0, 16)  # stage 3 only from +64 now
    ladder.recalculated(LadderPlan.compile(wide, INST, LadderPolicy(), None))
    assert ladder.on_tick(ENTRY + 50 * TPP, ENTRY + 50 * TPP) is None  # 50 - 16 < 35: held
    move = ladder.on_tick(ENTRY + 53 * TPP, ENTRY + 53 * TPP)
    assert isinstance(move, MoveStop) and move.level == ENTRY + 37 * TPP  # 16 behind, below +64
