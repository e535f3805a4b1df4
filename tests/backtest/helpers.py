"""Builders for backtest tests: synthetic markets and kernel trades."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from traild.backtest.kernel import KernelTrade
from traild.backtest.markets import Market, TickSource
from traild.core.calculator import StageConfig
from traild.core.instruments import InstrumentTable, to_centipips
from traild.core.ladder import LadderPlan, LadderPolicy
from traild.core.messages import Direction

OANDA = "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
FXCM = "EURUSD_fxcm_ticks_2014-05-01_2014-05-15.csv.gz"
GBPJPY = "GBPJPY_dukascopy_ticks_2012-12-02_2012-12-14.csv.gz"
SMALL = "EURUSD_dukascopy_ticks_2019-01-01T23_2h36m.csv.gz"
T0_MS = 1_398_902_400_000  # 2014-05-01T00:00:00Z
REGULAR = StageConfig(15, 2, 20, 8, 30, 15, 40, 1.0, 10)
SCALP = StageConfig(10, 1, 12, 5, 15, 10, 20, 0.8, 5)
DEFAULT_POLICY = LadderPolicy()


def synthetic_market(
    bid: Sequence[int], ask: Sequence[int], epic: str = "EURUSD", step_ms: int = 1000
) -> Market:
    """A market of integer-tick quotes, one every ``step_ms`` (distinct times)."""
    inst = InstrumentTable().resolve(epic)
    b = np.asarray(bid, dtype=np.int64)
    a = np.asarray(ask, dtype=np.int64)
    tick = float(inst.tick_size)
    return Market(
        source=TickSource(Path("synthetic.csv"), epic),
        instrument=inst,
        ts_ms=T0_MS + step_ms * np.arange(b.size, dtype=np.int64),
        bid_px=(b * tick).astype(np.float64),
        ask_px=(a * tick).astype(np.float64),
        bid=b,
        ask=a,
        rejected=0,
        crossed=int(np.count_nonzero(b > a)),
    )


def kernel_trade(
    market: Market,
    entry_idx: int,
    direction: Direction,
    stop_pips: float,
    limit_pips: float | None = None,
    stages: StageConfig = REGULAR,
    policy: LadderPolicy = DEFAULT_POLICY,
    atr_pips: float | None = None,
) -> KernelTrade:
    """A trade filled at ``entry_idx`` (ask for a BUY, bid for a SELL) with a compiled plan."""
    inst = market.instrument
    s = direction.sign
    entry = int(market.ask[entry_idx] if s > 0 else market.bid[entry_idx])
    stop = entry - s * inst.centipips_to_ticks_ceil(to_centipips(stop_pips))
    limit = None
    if limit_pips is not None:
        limit = entry + s * inst.centipips_to_ticks_ceil(to_centipips(limit_pips))
    plan = LadderPlan.compile(stages, inst, policy, atr_pips)
    lock = to_centipips(policy.profit_lock_trigger_pips) * inst.ticks_per_pip
    return KernelTrade(direction, entry_idx + 1, entry, stop, limit, plan, lock)
