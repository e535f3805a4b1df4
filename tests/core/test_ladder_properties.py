"""Properties of the ladder over random tick paths (hypothesis).

An independent reference model written from SPEC §2 (exact Fractions, no integer tricks)
must agree with the ladder tick by tick; on top of it the spec's guarantees are checked
directly: the stop never loosens, the profit lock holds, a sent stop is never on the wrong
side of the exit price nor inside the minimum distance, and the same input gives the same
output.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from traild.core.calculator import StageConfig
from traild.core.instruments import Instrument, InstrumentTable
from traild.core.ladder import Exit, Ladder, LadderPlan, LadderPolicy
from traild.core.messages import Direction, MoveStop, Reason

INSTRUMENTS = [
    InstrumentTable().resolve("EURUSD"),  # 10 ticks per pip
    InstrumentTable().resolve("CS.D.USDJPY.MINI.IP"),
    Instrument("FINE", Decimal("0.01"), Decimal("0.0001")),  # 100 ticks per pip
    Instrument("COARSE", Decimal("1"), Decimal("1")),  # 1 tick per pip
]
ENTRY = 1_000_000  # ticks; every instrument above has room around it


@dataclass(frozen=True)
class Case:
    direction: Direction
    inst: Instrument
    stages: StageConfig
    policy: LadderPolicy
    atr_pips: float | None
    stop: int  # directional distance below entry, ticks
    limit: int | None  # directional distance above entry, ticks
    path: tuple[tuple[int, int], ...]  # (exit-side offset from entry in ticks, spread)
    verdicts: tuple[bool, ...]  # per amendment: True = confirm, False = reject

    def quote(self, offset: int, spread: int) -> tuple[int, int]:
        """(bid, ask) whose exit side is ``offset`` ticks from entry in the trade's favour."""
        if self.direction is Direction.BUY:
            bid = ENTRY + offset
            return bid, bid + spread
        ask = ENTRY - offset
        return ask - spread, ask


def _cents(draw: st.DrawFn, lo: int, hi: int) -> int:
    return draw(st.integers(lo, hi))


@st.composite
def cases(draw: st.DrawFn, max_ticks: int = 200) -> Case:
    e = _cents(draw, 10, 2500)
    s1 = draw(st.integers(e, e + 2000))
    s2 = draw(st.integers(s1 + 1, s1 + 2000))
    s3 = draw(st.integers(s2 + 1, s2 + 3000))
    lock1 = draw(st.integers(0, s1 - 1))
    stages = StageConfig(
        early_be_trigger=e / 100,
        early_be_buffer=draw(st.integers(0, e - 1)) / 100,
        stage1_trigger=s1 / 100,
        stage1_lock=lock1 / 100,
        stage2_trigger=s2 / 100,
        stage2_lock=draw(st.integers(lock1, s2 - 1)) / 100,
        stage3_trigger=s3 / 100,
        stage3_atr_multiplier=draw(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0])),
        stage3_min_distance=_cents(draw, 1, 3000) / 100,
    )
    trigger = _cents(draw, 10, 3000)
    policy = LadderPolicy(
        profit_lock=draw(st.booleans()),
        profit_lock_trigger_pips=trigger / 100,
        profit_lock_pips=draw(st.integers(0, trigger - 1)) / 100,
        min_amend_step_pips=draw(st.sampled_from([0, 0, 10, 50, 50, 100, 250])) / 100,
        min_stop_distance_pips=draw(st.sampled_from([0, 0, 0, 50, 100, 500, 1200, 2500])) / 100,
    )
    atr = draw(st.one_of(st.none(), st.integers(1, 400).map(lambda k: k / 10)))
    inst = draw(st.sampled_from(INSTRUMENTS))
    scale = inst.ticks_per_pip
    step = st.one_of(
        st.integers(-3 * scale, 3 * scale),
        st.integers(-40 * scale, 40 * scale),
    )
    n = draw(st.integers(1, max_ticks))
    moves = draw(st.lists(step, min_size=n, max_size=n))
    offsets, x = [], draw(st.integers(-5 * scale, 5 * scale))
    for dx in moves:
        x += dx
        offsets.append(x)
    spreads = draw(st.lists(st.integers(-2, 3 * scale), min_size=n, max_size=n))
    return Case(
        direction=draw(st.sampled_from([Direction.BUY, Direction.SELL])),
        inst=inst,
        stages=stages,
        policy=policy,
        atr_pips=atr,
        stop=draw(st.integers(1, 60 * scale)),
        limit=draw(st.one_of(st.none(), st.integers(1, 150 * scale))),
        path=tuple(zip(offsets, spreads, strict=True)),
        verdicts=tuple(draw(st.lists(st.booleans(), min_size=64, max_size=64))),
    )


# -- the reference model (SPEC §2, directional ticks, exact fractions) -----------------------
def _half_up_cents(value: Fraction) -> int:
    return math.floor(value * 100 + Fraction(1, 2))


class Reference:
    """The ladder as the spec words it; offsets are directional ticks from entry."""

    def __init__(self, c: Case) -> None:
        tpp = c.inst.ticks_per_pip
        s, p = c.stages, c.policy

        def pips(v: float) -> Fraction:
            return Fraction(Decimal(repr(v)))

        self.tpp = tpp
        rungs = [
            (pips(s.early_be_trigger), pips(s.early_be_buffer), Reason.EARLY_BE),
            (pips(s.stage1_trigger), pips(s.stage1_lock), Reason.STAGE1),
            (pips(s.stage2_trigger), pips(s.stage2_lock), Reason.STAGE2),
        ]
        if p.profit_lock:
            rungs.append(
                (pips(p.profit_lock_trigger_pips), pips(p.profit_lock_pips), Reason.PROFIT_LOCK)
            )
        # a floor's level is rounded to the tick towards the market: up, directionally
        self.rungs = [(t, math.ceil(lock * tpp), r) for t, lock, r in rungs]
        distance = pips(s.stage3_min_distance)
        if c.atr_pips is not None:
            atr_d = Fraction(_half_up_cents(pips(s.stage3_atr_multiplier) * pips(c.atr_pips)), 100)
            distance = max(distance, atr_d)
        self.s3_trigger = pips(s.stage3_trigger)
        self.s3_distance = max(math.floor(distance * tpp), 1)
        self.min_distance = max(math.ceil(pips(p.min_stop_distance_pips) * tpp), 1)
        self.min_step = pips(p.min_amend_step_pips)
        self.stop: int | None = -c.stop
        self.limit = c.limit
        self.best: int | None = None

    def floors(self, mfe: int) -> list[tuple[int, Reason]]:
        reached = Fraction(mfe, self.tpp)
        out = [(lvl, r) for t, lvl, r in self.rungs if reached >= t]
        if reached >= self.s3_trigger:
            out.append((mfe - self.s3_distance, Reason.STAGE3))
        return out

    def tick(self, x: int) -> tuple[str, int, bool | set[Reason]] | None:
        """Exit ("exit", price, gap) / move ("move", level, reasons) / None."""
        if self.stop is not None and x <= self.stop:
            return ("exit_stop", x, x < self.stop)
        if self.limit is not None and x >= self.limit:
            return ("exit_limit", x, x > self.limit)
        self.best = x if self.best is None else max(self.best, x)
        floors = self.floors(self.best)
        if not floors:
            return None
        desired = max(lvl for lvl, _ in floors)
        current = self.stop
        if current is not None and desired <= current:
            return None
        target = min(desired, x - self.min_distance)
        if current is not None and target <= current:
            return None
        new_rung = any(
            current is None or current < lvl <= target for lvl, r in floors if r != Reason.STAGE3
        )
        if (
            current is not None
            and not new_rung
            and Fraction(target - current, self.tpp) < self.min_step
        ):
            return None
        return ("move", target, {r for lvl, r in floors if lvl == desired})


def ladder_of(c: Case) -> Ladder:
    plan = LadderPlan.compile(c.stages, c.inst, c.policy, c.atr_pips)
    sign = c.direction.sign
    limit = None if c.limit is None else ENTRY + sign * c.limit
    return Ladder(plan, c.direction, ENTRY, ENTRY - sign * c.stop, limit)


def run(c: Case) -> list[tuple[int, object]]:
    """Drive the ladder with a verdict after every MoveStop; the events, in real ticks."""
    ladder = ladder_of(c)
    verdicts = deque(c.verdicts)
    events: list[tuple[int, object]] = []
    for i, (off, spread) in enumerate(c.path):
        event = ladder.on_tick(*c.quote(off, spread))
        if event is None:
            continue
        events.append((i, event))
        if isinstance(event, Exit):
            break
        if verdicts and not verdicts.popleft():
            ladder.reject()
        else:
            ladder.confirm(event.level)
    return events


# -- properties ------------------------------------------------------------------------------------
@settings(max_examples=900, deadline=None)
@given(cases())
def test_ladder_agrees_with_the_reference_model_tick_by_tick(c: Case) -> None:
    ladder = ladder_of(c)
    ref = Reference(c)
    sign = c.direction.sign
    verdicts = deque(c.verdicts)
    for off, spread in c.path:
        event = ladder.on_tick(*c.quote(off, spread))
        expected = ref.tick(off)
        if expected is None:
            assert event is None, (off, event)
            continue
        kind, value, detail = expected
        if kind == "move":
            assert isinstance(event, MoveStop), (off, expected, event)
            assert sign * (event.level - ENTRY) == value
            assert isinstance(detail, set) and event.reason in detail
            if verdicts and not verdicts.popleft():
                ladder.reject()
            else:
                ladder.confirm(event.level)
                ref.stop = value
            continue
        assert isinstance(event, Exit), (off, expected, event)
        assert event.reason == kind.removeprefix("exit_")
        assert (sign * (event.price - ENTRY), event.gap) == (value, detail)
        assert ladder.closed
        return


@settings(max_examples=200, deadline=None)
@given(cases(), st.integers(0, 6), st.data())
def test_stop_never_loosens_and_is_never_sent_inside_the_market(
    c: Case, delay: int, data: st.DataObject
) -> None:
    """With confirmations arriving ``delay`` ticks late (in order), sometimes rejected."""
    ladder = ladder_of(c)
    sign = c.direction.sign
    md = max(
        math.ceil(Fraction(Decimal(repr(c.policy.min_stop_distance_pips))) * c.inst.ticks_per_pip),
        1,
    )
    in_flight: deque[tuple[int, int]] = deque()
    verdicts = deque(c.verdicts)
    last_stop = ladder.stop
    for i, (off, spread) in enumerate(c.path):
        while in_flight and in_flight[0][0] <= i:
            _, level = in_flight.popleft()
            if verdicts and not verdicts.popleft():
                ladder.reject()
            else:
                ladder.confirm(level)
        assert ladder.stop is not None and last_stop is not None
        assert sign * ladder.stop >= sign * last_stop  # never loosens
        last_stop = ladder.stop
        before = max(sign * ladder.stop, sign * (ladder.pending or ladder.stop))
        bid, ask = c.quote(off, spread)
        event = ladder.on_tick(bid, ask)
        if isinstance(event, Exit):
            assert event.level == (ladder.limit if event.reason == "limit" else last_stop)
            return
        if isinstance(event, MoveStop):
            x = sign * (bid if sign > 0 else ask)
            level = sign * event.level
            assert level <= x - md  # not through, not inside the minimum distance
            assert level > before  # an amendment always improves on stop and pending
            in_flight.append((i + delay, event.level))


@settings(max_examples=500, deadline=None)
@given(cases())
def test_profit_lock_holds_once_reached_and_confirmed(c: Case) -> None:
    """After MFE reached the trigger, whenever the market allows the lock it is in place."""
    if not c.policy.profit_lock:
        return
    ladder = ladder_of(c)
    sign = c.direction.sign
    tpp = c.inst.ticks_per_pip
    trigger = Fraction(Decimal(repr(c.policy.profit_lock_trigger_pips)))
    lock = math.ceil(Fraction(Decimal(repr(c.policy.profit_lock_pips))) * tpp)
    md = max(math.ceil(Fraction(Decimal(repr(c.policy.min_stop_distance_pips))) * tpp), 1)
    verdicts = deque(c.verdicts)
    for off, spread in c.path:
        event = ladder.on_tick(*c.quote(off, spread))
        if isinstance(event, Exit):
            return
        confirmed = True
        if isinstance(event, MoveStop):
            if verdicts and not verdicts.popleft():
                ladder.reject()
                confirmed = False
            else:
                ladder.confirm(event.level)
        mfe = ladder.mfe
        assert mfe is not None and ladder.stop is not None
        if confirmed and Fraction(mfe, tpp) >= trigger and off - md >= lock:
            assert sign * (ladder.stop - ENTRY) >= lock, (off, mfe, ladder.stop)


@settings(max_examples=150, deadline=None)
@given(cases())
def test_same_input_gives_the_same_output(c: Case) -> None:
    assert run(c) == run(c)


@settings(max_examples=150, deadline=None)
@given(cases(max_ticks=120))
def test_buy_and_sell_are_mirror_images(c: Case) -> None:
    buy = Case(**{**c.__dict__, "direction": Direction.BUY})
    sell = Case(**{**c.__dict__, "direction": Direction.SELL})

    def mirrored(events: list[tuple[int, object]]) -> list[tuple[int, object]]:
        out: list[tuple[int, object]] = []
        for i, e in events:
            if isinstance(e, MoveStop):
                out.append((i, (e.level - ENTRY, e.reason)))
            else:
                assert isinstance(e, Exit)
                out.append((i, (e.price - ENTRY, e.reason, e.gap, e.level - ENTRY)))
        return out

    flipped = [
        (i, (-v[0], *v[1:2]) if len(v) == 2 else (-v[0], v[1], v[2], -v[3]))
        for i, v in mirrored(run(sell))
    ]
    assert mirrored(run(buy)) == flipped


@settings(max_examples=300, deadline=None)
@given(cases(max_ticks=1), st.lists(st.integers(-500, 20_000), min_size=2, max_size=50))
def test_the_desired_stop_is_a_non_decreasing_function_of_mfe(c: Case, mfes: list[int]) -> None:
    plan = LadderPlan.compile(c.stages, c.inst, c.policy, c.atr_pips)
    levels = [plan.floor(m)[0] for m in sorted(mfes)]
    assert levels == sorted(levels)
    for m in mfes:
        offset, reason = plan.floor(m)
        assert (reason is None) == (offset == -(1 << 62))
        if reason is not None:  # never beyond the best price (the cap keeps a tick away)
            assert offset <= m


@settings(max_examples=200, deadline=None)
@given(cases())
def test_ticks_inside_the_quiet_band_change_nothing(c: Case) -> None:
    """A dispatcher that skips every tick inside the ladder's quiet band sees the same events
    as one that delivers every tick (the router relies on it)."""
    ladder = ladder_of(c)
    verdicts = deque(c.verdicts)
    events: list[tuple[int, object]] = []
    for i, (off, spread) in enumerate(c.path):
        bid, ask = c.quote(off, spread)
        band = ladder.quiet_band()
        x = bid if c.direction is Direction.BUY else -ask
        if band is not None and band[0] < x < band[1]:
            continue
        event = ladder.on_tick(bid, ask)
        if event is None:
            continue
        events.append((i, event))
        if isinstance(event, Exit):
            break
        if verdicts and not verdicts.popleft():
            ladder.reject()
        else:
            ladder.confirm(event.level)
    assert events == run(c)


@settings(max_examples=100, deadline=None)
@given(cases(), cases(), st.integers(0, 200))
def test_run_trade_sees_a_plan_its_tick_source_changes_mid_stream(
    c: Case, other: Case, at: int
) -> None:
    """A tick source that recalculates the ladder (real-time recalculation) voids the quiet
    band run_trade skips ticks by: the outcome equals delivering every tick."""
    from traild.core.replay import run_trade

    new_plan = LadderPlan.compile(other.stages, c.inst, c.policy, other.atr_pips)

    def source(ladder: Ladder) -> Iterator[tuple[int, int, int]]:
        for i, (off, spread) in enumerate(c.path):
            yield (i, *c.quote(off, spread))
            if i == at and not ladder.closed:
                ladder.recalculated(new_plan)

    def every_tick() -> list[tuple[int, object]]:
        ladder = ladder_of(c)
        events: list[tuple[int, object]] = []
        for i, bid, ask in source(ladder):
            event = ladder.on_tick(bid, ask)
            if isinstance(event, MoveStop):
                events.append((i, event.level))
                ladder.confirm(event.level)
            elif isinstance(event, Exit):
                events.append((i, event.price))
                break
        return events

    ladder = ladder_of(c)
    out = run_trade(ladder, source(ladder))
    got = [(a.ts, a.new) for a in out.amendments]
    if out.exit_reason != "end_of_data":
        assert out.exit_ts is not None and out.exit_price is not None
        got.append((out.exit_ts, out.exit_price))
    assert got == every_tick()
