"""Counterfactuals: every closed live trade replayed over its recorded ticks, other ways.

A trade's entry, initial stop, limit and market conditions at adoption (ATR, volatility regime,
session, market regime, as stored in ``trade_log``) go through the backtest's variants
(``fixed``, ``fixed+lock``, ``dynamic+lock`` and ``[rollout] counterfactual_variants``, e.g.
``dynamic+lock+regime``: ``backtest.variants``) and the same core
(``core.replay.run_trade_at`` over a ``Ladder``, quiet ticks jumped over with the backtest's
crossing index, as its event-driven path does), from the first recorded tick after the fill.
``model`` replays the stages the trade really trailed with (stored at adoption) under the
configured profit lock: on a faultless paper replay it is the live result, so ``live - model``
measures how far live execution (latency, refusals, gaps, restarts) departs from the model.

Not replayed: real-time recalculation (the stages stay those of adoption) and ticks the
recorder missed (a gap in the recording is not detected beyond "covers open to close").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from traild.adapters.tickfiles import EPOCH, TickColumns, ms_to_datetime
from traild.backtest.adaptive import variant_tables
from traild.backtest.kernel import CrossingIndex, both_sides
from traild.backtest.variants import DEFAULT_VARIANTS, parse_variants
from traild.core.calculator import (
    CalculatedStages,
    CalculatorParams,
    DynamicTrailingCalculator,
    MarketConditions,
    RegimeTables,
)
from traild.core.errors import ConfigError, InstrumentError, StageError
from traild.core.instruments import Instrument, InstrumentTable
from traild.core.ladder import Ladder, LadderPlan, LadderPolicy
from traild.core.messages import TradeRecord, TradeStatus
from traild.core.replay import TradeOutcome, run_trade_at
from traild.core.tradingday import trading_day_number

_MS = timedelta(milliseconds=1)


class TickHistory(Protocol):
    """Recorded ticks of an epic (``adapters.recorder.Recordings``)."""

    def epics(self) -> list[str]: ...

    def columns(
        self, epic: str, since: datetime | None = None, until: datetime | None = None
    ) -> TickColumns: ...


@dataclass(frozen=True, slots=True)
class Replayed:
    """One replay of a trade: how the method would have exited."""

    method: str
    fallback_reason: str | None
    exit_reason: str  # stop | limit | end_of_data (the recording ended first)
    exit_ts: datetime | None
    exit_price: float | None
    pnl_pips: float
    amendments: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "fallback_reason": self.fallback_reason,
            "exit_reason": self.exit_reason,
            "exit_ts": None if self.exit_ts is None else self.exit_ts.isoformat(),
            "exit_price": self.exit_price,
            "pnl_pips": round(self.pnl_pips, 2) + 0.0,
            "amendments": self.amendments,
        }


@dataclass(frozen=True, slots=True)
class TradeCounterfactuals:
    trade: TradeRecord
    trading_day: int  # days since 1970-01-01 (core.tradingday.trading_day_number)
    model: Replayed  # the stages it trailed with, the configured lock
    variants: dict[str, Replayed]

    @property
    def live_pnl(self) -> float:
        return float(self.trade.pnl_pips or 0.0)

    def as_dict(self) -> dict[str, Any]:
        t = self.trade
        return {
            "deal_id": t.deal_id,
            "epic": t.epic,
            "direction": t.direction.value,
            "opened_at": None if t.opened_at is None else t.opened_at.isoformat(),
            "closed_at": None if t.closed_at is None else t.closed_at.isoformat(),
            "method": t.trailing_calculation_method,
            "live": {
                "exit_reason": t.exit_reason,
                "exit_price": t.exit_price,
                "pnl_pips": round(self.live_pnl, 2) + 0.0,
            },
            "model": self.model.as_dict(),
            "live_minus_model_pips": round(self.live_pnl - self.model.pnl_pips, 2) + 0.0,
            "counterfactuals": {name: r.as_dict() for name, r in self.variants.items()},
        }


@dataclass(frozen=True, slots=True)
class Skipped:
    deal_id: str
    epic: str
    reason: str  # not_closed | no_entry | no_ticks | unknown_instrument | bad_stages


@dataclass(frozen=True, slots=True)
class CounterfactualSet:
    trades: tuple[TradeCounterfactuals, ...]
    skipped: tuple[Skipped, ...]
    variants: tuple[str, ...]


class _Ticks:
    """One epic's recorded ticks as integer ticks, loaded once, with the backtest's crossing
    index: the replay jumps over ticks that cannot change anything, as ``run_event`` does."""

    def __init__(self, columns: TickColumns, inst: Instrument) -> None:
        inv = float(1 / inst.tick_size)  # the factor Instrument.to_ticks uses
        self.ms = np.ascontiguousarray(columns.ts_ms, dtype=np.int64)
        self.ms_list: list[int] = self.ms.tolist()
        self.bid_ticks = np.rint(columns.bid * inv).astype(np.int64)
        self.ask_ticks = np.rint(columns.ask * inv).astype(np.int64)
        self.bid: list[int] = self.bid_ticks.tolist()
        self.ask: list[int] = self.ask_ticks.tolist()
        self._index: CrossingIndex | None = None

    def start(self, t: TradeRecord, entry: int) -> int | None:
        """Index of the first tick the trade trails on: after the fill tick (a tick at the
        open time at the entry price), else the first tick after the open; None when the
        recording does not cover the trade from open to close."""
        assert t.opened_at is not None and t.closed_at is not None
        opened = (t.opened_at - EPOCH) // _MS
        closed = (t.closed_at - EPOCH) // _MS
        if not self.ms_list or self.ms_list[0] > opened or self.ms_list[-1] < closed:
            return None
        i = int(np.searchsorted(self.ms, opened, side="left"))
        j = int(np.searchsorted(self.ms, opened, side="right"))
        side = self.ask if t.direction.sign > 0 else self.bid
        fill = next((k for k in range(i, j) if side[k] == entry), None)
        return j if fill is None else fill + 1

    def run(self, ladder: Ladder, start: int) -> TradeOutcome[int]:
        """``ladder`` over the ticks from ``start`` (``core.replay.run_trade_at``)."""
        if self._index is None:
            self._index = CrossingIndex(both_sides(self.bid_ticks, self.ask_ticks))
        index, n = self._index, len(self.ms_list)
        if ladder.sign > 0:  # a BUY's directional prices are x[0:n], a SELL's x[n:2n]
            seek = index.seek
        else:

            def seek(i: int, lo: float, hi: float) -> int:
                return index.seek(n + i, lo, hi) - n

        columns = (self.ms.data, self.bid_ticks.data, self.ask_ticks.data)
        return run_trade_at(ladder, columns, start, seek)


class Replayer:
    """Replays closed trades through ``variants`` with the settings' stages and policy."""

    def __init__(
        self,
        calc: CalculatorParams,
        policy: LadderPolicy,
        stage_config: Any,  # Settings.stage_config: (epic, is_scalp) -> StageConfig
        table: InstrumentTable,
        variants: str = DEFAULT_VARIANTS,
        min_stop_distance_pips: float = 0.0,
        regime_tables: Callable[[str, bool], RegimeTables] | None = None,
    ) -> None:
        # As the backtest: dynamic for every pair (the rollout allowlist is a live control)
        self.calc = replace(calc, dynamic_trailing_pairs=frozenset())
        self.policy = policy
        self.stage_config = stage_config
        self.table = table
        self.variants = parse_variants(variants)
        if any(v.realtime for v in self.variants):
            raise ConfigError(["counterfactual variants cannot recalculate in real time (+rt)"])
        self.min_stop = min_stop_distance_pips
        self.regime_tables = regime_tables or (lambda epic, scalp: {})

    def run(self, records: Sequence[TradeRecord], history: TickHistory) -> CounterfactualSet:
        done: list[TradeCounterfactuals] = []
        skipped: list[Skipped] = []
        loaded: dict[str, _Ticks | None] = {}
        for t in records:
            why = _unusable(t)
            if why is None:
                try:
                    inst = self.table.resolve(t.epic)
                except InstrumentError:
                    why = "unknown_instrument"
            if why is not None:
                skipped.append(Skipped(t.deal_id, t.epic, why))
                continue
            if t.epic not in loaded:
                loaded[t.epic] = self._load(t.epic, records, history, inst)
            ticks = loaded[t.epic]
            result = None if ticks is None else self.trade(t, inst, ticks)
            if isinstance(result, TradeCounterfactuals):
                done.append(result)
            else:
                skipped.append(Skipped(t.deal_id, t.epic, result or "no_ticks"))
        names = tuple(v.name for v in self.variants)
        return CounterfactualSet(tuple(done), tuple(skipped), names)

    def _load(
        self, epic: str, records: Sequence[TradeRecord], history: TickHistory, inst: Instrument
    ) -> _Ticks | None:
        if epic not in history.epics():
            return None
        opens = [t.opened_at for t in records if t.epic == epic and t.opened_at is not None]
        return _Ticks(history.columns(epic, min(opens) - timedelta(minutes=1)), inst)

    def trade(self, t: TradeRecord, inst: Instrument, ticks: _Ticks) -> TradeCounterfactuals | str:
        assert t.entry_price is not None and t.opened_at is not None
        entry = inst.to_ticks(t.entry_price)
        stop_price = t.initial_sl_price if t.initial_sl_price is not None else t.sl_price
        assert stop_price is not None
        stop = inst.to_ticks(stop_price)
        limit = None if t.limit_price is None else inst.to_ticks(t.limit_price)
        start = ticks.start(t, entry)
        if start is None:
            return "no_ticks"
        policy = replace(
            self.policy,
            min_stop_distance_pips=max(self.min_stop, float(inst.min_stop_distance_pips)),
        )
        try:
            lived = CalculatedStages.from_json(t.calculated_stages)
        except StageError:
            return "bad_stages"
        base = self.stage_config(t.epic, t.is_scalp_trade)
        cond = _conditions(t, float(inst.pip_size))
        replays = {}
        for v in self.variants:
            calc = DynamicTrailingCalculator(v.calculator_params(self.calc))
            tables = None
            if v.regime:
                configured = self.regime_tables(t.epic, t.is_scalp_trade)
                tables = variant_tables(configured, v.overrides, t.is_scalp_trade)
            stages = calc.calculate_stages(
                cond, base, t.is_scalp_trade, epic=t.epic, regimes=tables
            )
            replays[v.name] = _replay(
                t, inst, stages, v.ladder_policy(policy), entry, stop, limit, ticks, start
            )
        model = _replay(t, inst, lived, policy, entry, stop, limit, ticks, start)
        day = trading_day_number((t.opened_at - EPOCH) // _MS)  # of the entry (core.tradingday)
        return TradeCounterfactuals(t, day, model, replays)


def _unusable(t: TradeRecord) -> str | None:
    if t.status is not TradeStatus.CLOSED or t.closed_at is None or t.pnl_pips is None:
        return "not_closed"
    if t.entry_price is None or t.opened_at is None:
        return "no_entry"
    if t.initial_sl_price is None and t.sl_price is None:
        return "no_entry"
    return None


def _conditions(t: TradeRecord, pip: float) -> MarketConditions | None:
    """The conditions stored at adoption (ATR in price units -> pips); None when the trade
    had none (as live: ``no_conditions``)."""
    atr = t.atr_at_entry
    usable = atr is not None and math.isfinite(atr) and atr > 0
    if not usable and not (t.volatility_regime or t.session_at_entry or t.market_regime_at_entry):
        return None
    return MarketConditions(
        t.epic,
        atr / pip if usable and atr is not None else None,
        t.volatility_regime,
        t.session_at_entry,
        t.market_regime_at_entry,
    )


def _replay(
    t: TradeRecord,
    inst: Instrument,
    stages: CalculatedStages,
    policy: LadderPolicy,
    entry: int,
    stop: int,
    limit: int | None,
    ticks: _Ticks,
    start: int,
) -> Replayed:
    plan = LadderPlan.compile(stages.stages, inst, policy, stages.atr_pips)
    out = ticks.run(Ladder(plan, t.direction, entry, stop, limit), start)
    exit_price = out.exit_price if out.exit_price is not None else entry
    pnl = inst.pips(t.direction.sign * (exit_price - entry))
    return Replayed(
        stages.method,
        stages.fallback_reason,
        out.exit_reason,
        None if out.exit_ts is None else ms_to_datetime(out.exit_ts),
        None if out.exit_price is None else inst.to_price(out.exit_price),
        pnl,
        len(out.amendments),
    )
