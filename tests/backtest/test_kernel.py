"""The vectorised kernel against the event-driven core on generated tick paths (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.backtest.helpers import REGULAR, kernel_trade, synthetic_market
from traild.backtest.kernel import CrossingIndex, KernelTrade, run_batch
from traild.backtest.markets import Market
from traild.backtest.paths import run_event
from traild.core.calculator import StageConfig
from traild.core.instruments import CENTI
from traild.core.ladder import Ladder, LadderPolicy
from traild.core.messages import Direction
from traild.core.replay import run_trade

BUY, SELL = Direction.BUY, Direction.SELL


@st.composite
def tick_paths(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Bid/ask in ticks: a drifting random walk with jumps, spreads incl. crossed quotes."""
    n = draw(st.integers(2, 220))
    drift = draw(st.integers(-6, 6))
    steps = draw(
        st.lists(st.one_of(st.integers(-12, 12), st.integers(-160, 160)), min_size=n, max_size=n)
    )
    spreads = draw(st.lists(st.integers(-3, 25), min_size=n, max_size=n))
    bid = (110_000 + np.cumsum(np.array(steps) + drift)).tolist()
    return bid, [b + s for b, s in zip(bid, spreads, strict=True)]


@st.composite
def stage_configs(draw: st.DrawFn) -> StageConfig:
    """Consistent stages in 0.01 pip steps (rounding edges included)."""
    cp = st.integers
    eb = draw(cp(10, 1500))
    s1 = eb + draw(cp(0, 600))
    s2 = s1 + draw(cp(1, 800))
    s3 = s2 + draw(cp(1, 1000))
    s1_lock = draw(cp(0, s1 - 1))
    stages = StageConfig(
        early_be_trigger=eb / 100,
        early_be_buffer=draw(cp(0, eb - 1)) / 100,
        stage1_trigger=s1 / 100,
        stage1_lock=s1_lock / 100,
        stage2_trigger=s2 / 100,
        stage2_lock=draw(cp(s1_lock, s2 - 1)) / 100,
        stage3_trigger=s3 / 100,
        stage3_atr_multiplier=draw(cp(0, 200)) / 100,
        stage3_min_distance=draw(cp(1, 2000)) / 100,
    )
    assert not stages.problems()
    return stages


@st.composite
def policies(draw: st.DrawFn) -> LadderPolicy:
    trigger = draw(st.integers(50, 2000))
    return LadderPolicy(
        profit_lock=draw(st.booleans()),
        profit_lock_trigger_pips=trigger / 100,
        profit_lock_pips=draw(st.integers(0, trigger - 1)) / 100,
        min_amend_step_pips=draw(st.sampled_from([0, 0.1, 0.5, 1, 2.5, 0.37])),
        min_stop_distance_pips=draw(st.sampled_from([0, 0, 0, 0.3, 1, 2, 5, 12])),
    )


trades_st = st.tuples(
    st.integers(0, 10_000),  # entry position (mod the path)
    st.sampled_from([BUY, SELL]),
    st.integers(5, 3000),  # stop, centipips
    st.one_of(st.none(), st.integers(5, 6000)),  # limit, centipips
    stage_configs(),
    st.one_of(st.none(), st.integers(50, 3000)),  # ATR, centipips
)


def _never_capped(stages: StageConfig, policy: LadderPolicy, atr: float | None) -> bool:
    """With no minimum distance, only a rung whose lock rounds up to its trigger is capped."""
    if policy.min_stop_distance_pips > 0:
        return False
    trade = kernel_trade(synthetic_market([1, 1], [1, 1]), 0, BUY, 1, None, stages, policy, atr)
    return all(off < -(-trig // CENTI) for trig, off, _ in trade.plan.rungs)


def _trades(
    market: Market,
    specs: list[tuple[int, Direction, int, int | None, StageConfig, int | None]],
    policy: LadderPolicy,
) -> list[KernelTrade]:
    """The drawn trades on ``market`` (prices and ATR drawn in centipips)."""
    return [
        kernel_trade(
            market,
            pos % (len(market) - 1),
            direction,
            stop / 100,
            None if limit is None else limit / 100,
            stages,
            policy,
            None if atr is None else atr / 100,
        )
        for pos, direction, stop, limit, stages, atr in specs
    ]


@settings(max_examples=200, deadline=None)
@given(
    tick_paths(),
    st.lists(trades_st, min_size=1, max_size=4),
    policies(),
    st.sampled_from(["EURUSD", "USDJPY"]),
)
def test_kernel_matches_event_driven_core_on_any_tick_path(
    path: tuple[list[int], list[int]],
    specs: list[tuple[int, Direction, int, int | None, StageConfig, int | None]],
    policy: LadderPolicy,
    epic: str,
) -> None:
    bid, ask = path
    market = synthetic_market(bid, ask, epic)
    trades = _trades(market, specs, policy)
    fast = run_batch(market.both_sides(), market.index(), market.ts_ms, trades)
    for trade, got, spec in zip(trades, fast, specs, strict=True):
        expected = run_event(market, trade)
        if got is None:  # handed back: only when a move can be capped
            assert not _never_capped(spec[4], policy, None if spec[5] is None else spec[5] / 100)
            continue
        assert got == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-50, 50), min_size=1, max_size=300),
    st.lists(
        st.tuples(st.integers(0, 320), st.integers(-60, 10), st.integers(-10, 60)), max_size=8
    ),
)
def test_first_crossing_finds_the_first_tick_at_or_beyond_either_level(
    values: list[int], queries: list[tuple[int, int, int]]
) -> None:
    x = np.array(values, dtype=np.int64)
    index = CrossingIndex(x)
    start = np.array([q[0] for q in queries], dtype=np.int64)
    lo = np.array([q[1] for q in queries], dtype=np.int64)
    hi = np.array([q[2] for q in queries], dtype=np.int64)
    got = index.first_crossing(start, lo, hi).tolist()
    for (s, low, high), k in zip(queries, got, strict=True):
        hits = [i for i in range(s, len(values)) if values[i] <= low or values[i] >= high]
        assert k == (hits[0] if hits else len(values))
        # the one-query walk the event path jumps with finds the same tick (half-tick bands)
        assert index.seek(s, low + 0.5, high - 0.5) == k


def test_trade_stopped_by_its_first_tick_has_no_best_price_and_a_gap() -> None:
    market = synthetic_market([110_000, 109_700, 109_800], [110_010, 109_710, 109_810])
    trade = kernel_trade(market, 0, BUY, 20)  # entry 1.10010, stop 1.09810
    (got,) = run_batch(market.both_sides(), market.index(), market.ts_ms, [trade])
    assert got == run_event(market, trade)
    assert got is not None
    assert (got.exit_idx, got.exit_reason, got.gap, got.best) == (1, "stop", True, None)
    assert got.exit_price == 109_700 and got.exit_stop == 109_810


def test_trade_still_open_at_the_last_tick_ends_as_end_of_data_with_its_trailed_stop() -> None:
    bid = [110_000, 110_100, 110_160, 110_200, 110_150]  # +15 then +20 pips from 1.10000
    market = synthetic_market(bid, bid)
    trade = kernel_trade(market, 0, BUY, 20, None, REGULAR, LadderPolicy(profit_lock=False))
    (got,) = run_batch(market.both_sides(), market.index(), market.ts_ms, [trade])
    assert got == run_event(market, trade)
    assert got is not None
    assert (got.exit_reason, got.exit_idx, got.exit_price) == ("end_of_data", 4, 110_150)
    assert got.exit_stop == 110_080  # stage 1: entry + 8 pips
    assert [a[3] for a in got.amendments] == ["early_be", "stage1"]


def test_sell_limit_filled_through_a_gap_reports_the_tick_price() -> None:
    ask = [110_000, 109_950, 109_700]  # SELL from bid 1.09990, limit 20 pips = 1.09790
    market = synthetic_market([a - 10 for a in ask], ask)
    trade = kernel_trade(market, 0, SELL, 20, 20)
    (got,) = run_batch(market.both_sides(), market.index(), market.ts_ms, [trade])
    assert got == run_event(market, trade)
    assert got is not None
    assert (got.exit_reason, got.gap, got.exit_price) == ("limit", True, 109_700)


@settings(max_examples=200, deadline=None)
@given(
    tick_paths(),
    st.lists(trades_st, min_size=1, max_size=4),
    policies(),
    st.sampled_from(["EURUSD", "USDJPY"]),
)
def test_event_path_jumping_quiet_ticks_equals_the_core_visiting_every_tick(
    path: tuple[list[int], list[int]],
    specs: list[tuple[int, Direction, int, int | None, StageConfig, int | None]],
    policy: LadderPolicy,
    epic: str,
) -> None:
    """run_event delivers only the ticks outside the quiet band (CrossingIndex.seek); its
    result is the one of run_trade streaming every tick from the entry on."""
    bid, ask = path
    market = synthetic_market(bid, ask, epic)
    for trade in _trades(market, specs, policy):
        ladder = Ladder(trade.plan, trade.direction, trade.entry, trade.stop, trade.limit)
        ticks = zip(market.ts_ms.tolist(), bid, ask, strict=True)
        every = run_trade(ladder, list(ticks)[trade.start :], trade.lock_trigger)
        got = run_event(market, trade)
        assert got.exit_idx == trade.start + every.ticks_seen - 1
        assert (got.exit_ts, got.exit_price, got.exit_reason, got.gap) == (
            every.exit_ts,
            every.exit_price,
            every.exit_reason,
            every.gap,
        )
        assert (got.exit_stop, got.best, got.lock_ts) == (
            every.exit_stop,
            every.best,
            every.lock_ts,
        )
        assert got.amendments == tuple(
            (a.ts, a.old, a.new, a.reason.value) for a in every.amendments
        )
