"""Stages at adoption: calculated once per trade from its alert's conditions completed from
traild's own bars (seed phase 2), and recorded with the trade in batched writes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from loguru import logger

from traild.core.calculator import CalculatedStages, MarketConditions
from traild.core.conditions import BarHistory
from traild.core.errors import StoreError
from traild.core.instruments import InstrumentTable
from traild.core.messages import AlertRecord, TradeRecord
from traild.ports import TradeStore
from traild.runtime.records import durable
from traild.runtime.stages import Policy, calculate, merge_conditions

PAGE = 500  # trade_log rows per read of a poll, and per batched write of adoptions

Fields = dict[str, Any]  # trade_log columns to write


class Stager:
    """Calculates and records the stages of adopted trades."""

    def __init__(
        self,
        store: TradeStore,
        instruments: InstrumentTable,
        histories: dict[str, BarHistory],
        now: Callable[[], datetime],
        policy: Callable[[], Policy],
    ) -> None:
        self.store = store
        self.instruments = instruments
        self.histories = histories
        self.now = now
        self.policy = policy

    def calculated(
        self, trade: TradeRecord, cond: MarketConditions | None
    ) -> tuple[CalculatedStages, Fields]:
        """The stages and the trade_log fields that record them."""
        stages = calculate(self.policy(), trade, cond)
        pip = float(self.instruments.resolve(trade.epic).pip_size)
        return stages, {
            "calculated_stages": stages.to_json(),
            "trailing_calculation_method": stages.method,
            "fallback_reason": stages.fallback_reason,
            "atr_at_entry": None if stages.atr_pips is None else stages.atr_pips * pip,
            "volatility_regime": cond.volatility_regime if cond else None,
            "session_at_entry": cond.session if cond else None,
            "market_regime_at_entry": cond.market_regime if cond else None,
        }

    async def calculate_and_store(self, trade: TradeRecord) -> CalculatedStages:
        """Stages are calculated once, at adoption, and stored with the trade."""
        assert trade.id is not None
        stages, fields = self.calculated(trade, await self._conditions(trade))
        await self.store_adoptions([(trade.id, fields)])
        return stages

    async def store_adoptions(self, updates: list[tuple[int, Fields]]) -> None:
        """Adoption records in batched writes; the trades are trailed meanwhile."""
        for start in range(0, len(updates), PAGE):
            await durable(
                self.store.adopt_trades(updates[start : start + PAGE]),
                "adoption records queued, not yet durable",
                trades=len(updates),
            )

    async def alerts_of(self, trades: list[TradeRecord]) -> dict[int, AlertRecord]:
        """The alerts of the trades whose stages are still to be calculated (one read)."""
        wanted = [
            t.alert_id for t in trades if t.alert_id is not None and t.calculated_stages is None
        ]
        if not wanted:
            return {}
        try:
            return await self.store.get_alerts(wanted)
        except StoreError as exc:
            logger.bind(event="store.degraded", error=str(exc)).warning("alerts unreadable")
            return {}

    async def _conditions(self, trade: TradeRecord) -> MarketConditions | None:
        """The alert's conditions, completed from traild's own price history."""
        alert = None
        if trade.alert_id is not None:
            try:
                alert = await self.store.get_alert(trade.alert_id)
            except StoreError as exc:
                logger.bind(event="store.degraded", error=str(exc)).warning("alert unreadable")
        return self.conditions(trade, alert)

    def conditions(self, trade: TradeRecord, alert: AlertRecord | None) -> MarketConditions | None:
        history = self.histories.get(trade.epic)
        own = None
        if history is not None and history.atr is not None:
            own = history.conditions(trade.epic, self.now())
        pip = float(self.instruments.resolve(trade.epic).pip_size)
        return merge_conditions(trade.epic, alert, own, pip)
