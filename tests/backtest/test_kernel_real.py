"""Fast path == event-driven core on real ticks: hundreds of random trades per feed."""

from __future__ import annotations

import numpy as np
import pytest

from tests.backtest.helpers import REGULAR, SCALP, kernel_trade
from traild.backtest.kernel import KernelTrade, PathResult, run_batch
from traild.backtest.markets import Market
from traild.backtest.paths import run_event
from traild.core.calculator import (
    REGIMES,
    SESSIONS,
    CalculatorParams,
    DynamicTrailingCalculator,
    MarketConditions,
)
from traild.core.ladder import LadderPolicy
from traild.core.messages import Direction

# per_stage: its collapsed ladders exercise the kernel's rung bookkeeping and distance caps hardest
CALC = DynamicTrailingCalculator(
    CalculatorParams(enable_dynamic_trailing=True, atr_clamp="per_stage")
)


def _random_trades(market: Market, count: int, seed: int, min_distance: float) -> list[KernelTrade]:
    """Trades in both directions with fixed or dynamic stages, lock on/off, various steps."""
    rng = np.random.default_rng(seed)
    trades = []
    for _ in range(count):
        scalp = bool(rng.random() < 0.5)
        conditions = MarketConditions(
            market.epic,
            float(rng.uniform(2, 30)),
            str(rng.choice(REGIMES)),
            str(rng.choice(SESSIONS)),
        )
        base = SCALP if scalp else REGULAR
        stages = CALC.calculate_stages(conditions, base, scalp) if rng.random() < 0.6 else None
        policy = LadderPolicy(
            profit_lock=bool(rng.random() < 0.7),
            min_amend_step_pips=float(rng.choice([0.0, 0.5, 2.0])),
            min_stop_distance_pips=min_distance,
        )
        trades.append(
            kernel_trade(
                market,
                int(rng.integers(0, len(market) - 2)),
                Direction.BUY if rng.random() < 0.5 else Direction.SELL,
                float(rng.uniform(3, 15)),
                None if rng.random() < 0.3 else float(rng.uniform(5, 30)),
                base if stages is None else stages.stages,
                policy,
                None if stages is None else stages.atr_pips,
            )
        )
    return trades


def _compare(market: Market, trades: list[KernelTrade]) -> tuple[list[PathResult], int]:
    fast = run_batch(market.both_sides(), market.index(), market.ts_ms, trades)
    handed_back = 0
    results = []
    for trade, got in zip(trades, fast, strict=True):
        expected = run_event(market, trade)
        if got is None:
            handed_back += 1
        else:
            assert got == expected, trade
        results.append(expected)
    return results, handed_back


@pytest.mark.parametrize("feed", ["oanda", "gbpjpy"])
def test_fast_path_gives_identical_exits_stops_and_amendments_on_real_ticks(
    feed: str, request: pytest.FixtureRequest
) -> None:
    market: Market = request.getfixturevalue(feed)
    results, handed_back = _compare(market, _random_trades(market, 300, seed=11, min_distance=0))
    assert handed_back == 0  # without a minimum distance nothing is ever capped
    reasons = {r.exit_reason for r in results}
    assert {"stop", "limit"} <= reasons
    assert sum(len(r.amendments) for r in results) > 300  # the ladder really moved
    moved_by = {a[3] for r in results for a in r.amendments}
    assert {"profit_lock", "early_be", "stage1", "stage2", "stage3"} <= moved_by


def test_trades_capped_by_the_minimum_distance_are_replayed_by_the_core(oanda: Market) -> None:
    results, handed_back = _compare(oanda, _random_trades(oanda, 150, seed=5, min_distance=3))
    assert 0 < handed_back < len(results)  # the rest still match the core exactly
