"""Backtest variants whose stages follow the market: regime tables and real-time recalculation.

* ``dynamic+lock+regime``     dynamic+lock with the configured per-market-regime stage tables
                              (``[pairs.*.*.regimes.*]``); the market regime is the signal's,
                              else the one traild's bars give at entry
* ``dynamic+lock+rt``         dynamic+lock, stages recalculated at each closed bar on a
                              volatility-regime shift of ``realtime_regime_shift`` levels
* ``dynamic+lock+regime+rt``  both
* grid keys ``regime.<market_regime>.<stage key>=V1,V2`` (pips) set entries of the regular
  tables, ``scalp_regime.<market_regime>.<stage key>`` those of the scalp tables.

Same core as the daemon: the calculator (``regime_base``, ``recalculate``), and for ``+rt`` the
event-driven ladder driven by ``core.realtime.RealtimeRecalc`` over the market's ticks, with a
``BarHistory`` warmed up on the bars before the entry exactly as ``entry_conditions`` builds it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

import numpy as np

from traild.adapters.tickfiles import ms_to_datetime
from traild.backtest.kernel import KernelTrade, PathResult
from traild.backtest.markets import Market, bar_shaping_ticks
from traild.backtest.paths import EVENT, to_ms
from traild.backtest.signals import TradeSpec
from traild.core.calculator import (
    CalculatedStages,
    DynamicTrailingCalculator,
    RegimeTables,
    StageConfig,
)
from traild.core.conditions import BarHistory, ConditionParams
from traild.core.errors import UsageError
from traild.core.ladder import Ladder, LadderPlan, LadderPolicy
from traild.core.realtime import RealtimeRecalc
from traild.core.replay import run_trade

REGIME, RT, REGIME_RT = "dynamic+lock+regime", "dynamic+lock+rt", "dynamic+lock+regime+rt"
# name -> (dynamic, lock, regime tables, real-time recalculation)
ADAPTIVE = {
    REGIME: (True, True, True, False),
    RT: (True, True, False, True),
    REGIME_RT: (True, True, True, True),
}
# grid key prefixes of the regular and the scalp tables (as volatility.* / scalp_volatility.*)
GRID_PREFIXES = {"regime": False, "scalp_regime": True}


def is_regime_key(key: str) -> bool:
    return key.split(".", 1)[0] in GRID_PREFIXES and "." in key


def check_regime_key(key: str) -> None:
    """``[scalp_]regime.<market_regime>.<stage key>``, else a UsageError naming the form."""
    _, regime, name = [*key.split(".", 2), "", ""][:3]
    if regime and regime.replace("_", "").isalnum() and name in StageConfig.field_names():
        return
    raise UsageError(
        f"--grid: unknown key {key!r}; regime tables take regime.<market_regime>.<stage key>"
        " (regular trades) or scalp_regime.<market_regime>.<stage key> (scalps), with a "
        f"stage key of {', '.join(StageConfig.field_names())}"
    )


def variant_tables(
    configured: RegimeTables, overrides: Sequence[tuple[str, float]], is_scalp: bool
) -> dict[str, dict[str, float]]:
    """The configured tables of one (epic, kind) with a grid point's values for that kind."""
    tables = {name: dict(keys) for name, keys in configured.items()}
    for key, value in overrides:
        if is_regime_key(key):
            prefix, regime, name = key.split(".", 2)
            if GRID_PREFIXES[prefix] == is_scalp:
                tables.setdefault(regime, {})[name] = value
    return tables


class Warmup:
    """A ``BarHistory`` for any entry of one market, fed only the bars that matter.

    The regime needs ``atr_period + regime_lookback`` closed bars and the market regime
    ``4 x adx_period``: feeding the bar-shaping ticks of that many bars (plus margin) before
    the entry gives the same bars, ATRs and regimes as feeding the whole history.
    """

    def __init__(self, market: Market, params: ConditionParams) -> None:
        self.market = market
        self.params = params
        self.mid = market.mid_px()
        self.feed = bar_shaping_ticks(market.ts_ms, self.mid, params.bar_minutes)
        keys = market.ts_ms[self.feed] // 1000 // (params.bar_minutes * 60)
        self.bar_no = np.concatenate(([0], np.cumsum(keys[1:] != keys[:-1]))).astype(np.int64)
        p = params
        self.bars = p.atr_period + p.regime_lookback + max(4 * p.adx_period, p.er_period) + 2

    def history(self, entry: int) -> BarHistory:
        """The bars as they stand once the entry tick itself has been added."""
        m = self.market
        history = BarHistory(float(m.instrument.pip_size), self.params)
        pos = int(np.searchsorted(self.feed, entry, side="left"))
        if pos > 0:
            first = int(np.searchsorted(self.bar_no, self.bar_no[pos - 1] - self.bars))
            for i in [*self.feed[first:pos].tolist(), entry]:
                mid = float(self.mid[i])
                history.add(ms_to_datetime(int(m.ts_ms[i])), mid, mid)
        else:
            mid = float(self.mid[entry])
            history.add(ms_to_datetime(int(m.ts_ms[entry])), mid, mid)
        return history


Columns = tuple[list[int], list[float], list[float], list[int], list[int]]


def _columns(market: Market) -> Columns:
    return (
        market.ts_ms.tolist(),
        market.bid_px.tolist(),
        market.ask_px.tolist(),
        market.bid.tolist(),
        market.ask.tolist(),
    )


def _quotes(cols: Columns, start: int) -> Iterator[tuple[datetime, float, float, int, int]]:
    ms, bid_px, ask_px, bid, ask = cols
    for i in range(start, len(ms)):
        yield ms_to_datetime(ms[i]), bid_px[i], ask_px[i], bid[i], ask[i]


def run_realtime(
    market: Market,
    trades: Sequence[TradeSpec],
    jobs: Sequence[KernelTrade],
    calcs: Sequence[CalculatedStages],
    calculator: DynamicTrailingCalculator,
    bases: Mapping[tuple[str, bool], StageConfig],
    tables: Mapping[tuple[str, bool], RegimeTables],
    policy: LadderPolicy,
    params: ConditionParams,
    shift: int,
) -> tuple[list[PathResult], list[str], list[int]]:
    """Every trade through the event-driven core with real-time recalculation; the results,
    their path ("event") and how often each trade was recalculated."""
    warm = Warmup(market, params)
    inst = market.instrument
    cols = _columns(market)
    results, counts = [], []
    for t, job, cs in zip(trades, jobs, calcs, strict=True):

        def compile_(result: CalculatedStages) -> LadderPlan:
            return LadderPlan.compile(result.stages, inst, policy, result.atr_pips)

        recalc = RealtimeRecalc(
            calculator,
            cs,
            bases[(t.epic, t.is_scalp)],
            warm.history(t.entry_idx),
            compile_,
            t.epic,
            t.is_scalp,
            shift,
            tables.get((t.epic, t.is_scalp)),
            t.conditions.market_regime,
        )
        ladder = Ladder(job.plan, job.direction, job.entry, job.stop, job.limit)
        out = run_trade(ladder, recalc.quotes(ladder, _quotes(cols, job.start)), job.lock_trigger)
        if out.exit_ts is None or out.exit_price is None:
            raise ValueError(f"trade starting at tick {job.start} has no tick to run on")
        counts.append(len(recalc.events))
        results.append(
            PathResult(
                exit_idx=job.start + out.ticks_seen - 1,
                exit_ts=to_ms(out.exit_ts),
                exit_price=out.exit_price,
                exit_reason=out.exit_reason,
                gap=out.gap,
                exit_stop=out.exit_stop,
                best=out.best,
                lock_ts=None if out.lock_ts is None else to_ms(out.lock_ts),
                amendments=tuple(
                    (to_ms(a.ts), a.old, a.new, a.reason.value) for a in out.amendments
                ),
            )
        )
    return results, [EVENT] * len(results), counts
