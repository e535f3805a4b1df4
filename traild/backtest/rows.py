"""A backtest's output row: one trade in one variant (``TradeRow``), built from what a trading
path returned (``trade_row``), with the premature stop-out check of SPEC §8."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from traild.backtest.kernel import NONE, PathResult
from traild.backtest.markets import Market
from traild.backtest.signals import TradeSpec
from traild.core.stageconfig import CalculatedStages


@dataclass(frozen=True, slots=True)
class TradeRow:
    """One trade in one variant, as reported (prices as floats on the tick grid, pips)."""

    variant: str
    trade_id: int
    epic: str
    direction: str
    is_scalp: bool
    entry_ts: int  # epoch ms
    entry: float
    initial_stop: float
    limit: float | None
    method: str
    fallback_reason: str | None
    atr_pips: float | None
    volatility_regime: str | None
    session: str | None
    market_regime: str | None
    exit_ts: int
    exit_price: float
    exit_reason: str
    exit_stop: float | None
    gap: bool
    pnl_pips: float
    mfe_pips: float
    slippage_pips: float | None  # stop exits: how far beyond the stop the fill was
    minutes_to_lock: float | None
    lock_violation: bool
    lock_slippage_loss: bool
    premature: bool
    amendments: int
    path: str  # fast | event (the kernel handed it back, or --engine event)
    recalculations: int = 0  # real-time recalculations of its stages (+rt variants)


def premature_stopouts(
    market: Market, trades: Sequence[TradeSpec], results: Sequence[PathResult], lookahead_ms: int
) -> list[bool]:
    """Stop exits (the initial stop included) whose limit traded within the lookahead (SPEC §8)."""
    n = len(market)
    picked = [
        i
        for i, (t, r) in enumerate(zip(trades, results, strict=True))
        if r.exit_reason == "stop" and t.limit is not None
    ]
    out = [False] * len(trades)
    if not picked:
        return out
    sign = np.array([trades[i].direction.sign for i in picked], dtype=np.int64)
    base = np.where(sign > 0, 0, n)
    start = base + np.array([results[i].exit_idx + 1 for i in picked], dtype=np.int64)
    lo = np.full(len(picked), NONE, dtype=np.int64)  # only the take-profit side matters
    hi = sign * np.array([trades[i].limit or 0 for i in picked], dtype=np.int64)
    k = market.index().first_crossing(start, lo, hi)
    inside = k < base + n
    at = np.where(inside, k, base)
    until = np.array([results[i].exit_ts for i in picked], dtype=np.int64) + lookahead_ms
    hit = inside & (market.ts_ms[at - base] <= until)
    for i, h in zip(picked, hit.tolist(), strict=True):
        out[i] = h
    return out


def trade_row(
    variant: str,
    market: Market,
    t: TradeSpec,
    cs: CalculatedStages,
    r: PathResult,
    premature: bool,
    lock_ticks: int,
    path: str,
) -> TradeRow:
    inst = market.instrument
    s, tpp, price = t.direction.sign, inst.ticks_per_pip, inst.to_price
    pnl = s * (r.exit_price - t.entry)
    # MFE over every tick since entry, the exit tick included (SPEC §1).
    best = s * r.exit_price if r.best is None else max(s * r.best, s * r.exit_price)
    stopped = r.exit_reason == "stop"
    locked = r.lock_ts is not None
    c = t.conditions
    return TradeRow(
        variant=variant,
        trade_id=t.trade_id,
        epic=t.epic,
        direction=t.direction.value,
        is_scalp=t.is_scalp,
        entry_ts=t.entry_ts,
        entry=price(t.entry),
        initial_stop=price(t.stop),
        limit=None if t.limit is None else price(t.limit),
        method=cs.method,
        fallback_reason=cs.fallback_reason,
        atr_pips=c.atr_pips,
        volatility_regime=c.volatility_regime,
        session=c.session,
        market_regime=c.market_regime,
        exit_ts=r.exit_ts,
        exit_price=price(r.exit_price),
        exit_reason=r.exit_reason,
        exit_stop=None if r.exit_stop is None else price(r.exit_stop),
        gap=r.gap,
        pnl_pips=pnl / tpp,
        mfe_pips=(best - s * t.entry) / tpp,
        slippage_pips=(
            s * (r.exit_stop - r.exit_price) / tpp if stopped and r.exit_stop is not None else None
        ),
        minutes_to_lock=None if r.lock_ts is None else (r.lock_ts - t.entry_ts) / 60_000,
        lock_violation=(
            stopped
            and locked
            and r.exit_stop is not None
            and s * (r.exit_stop - t.entry) < lock_ticks
        ),
        # SPEC §2: reached the trigger, stopped at/beyond entry, filled below it by slippage
        lock_slippage_loss=(
            stopped
            and locked
            and pnl < 0
            and r.exit_stop is not None
            and s * (r.exit_stop - t.entry) >= 0
        ),
        premature=premature,
        amendments=len(r.amendments),
        path=path,
    )
