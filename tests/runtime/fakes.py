"""In-memory fakes of the ports for runtime unit tests (injected through constructors)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import trio

from traild.core.errors import BrokerTimeout, BrokerUnavailable, RateLimited
from traild.core.messages import (
    AlertRecord,
    AmendmentRecord,
    AmendState,
    Confirmation,
    Direction,
    OpenRequest,
    Position,
    Reason,
    StageRecalculation,
    TradeRecord,
    TradeStatus,
)
from traild.ports import EventSink
from traild.runtime.gateway import AmendTarget
from traild.testing.memory_store import TradeTable


class MemoryStore:
    """A TradeStore in memory; records every call for assertions."""

    def __init__(self) -> None:
        self.trades = TradeTable()
        self.rows_read = 0
        self.alerts: dict[int, AlertRecord] = {}
        self.amendments: dict[int, AmendmentRecord] = {}
        self.progress: list[tuple[int, float]] = []
        self.recalculations: list[StageRecalculation] = []

    async def load_open_trades(self) -> list[TradeRecord]:
        found = [
            t for t in self.trades.values() if t.status in (TradeStatus.OPEN, TradeStatus.PENDING)
        ]
        self.rows_read += len(found)
        return found

    async def changed_trades(
        self, after: int, limit: int = 1000, open_only: bool = False
    ) -> tuple[list[TradeRecord], int]:
        changed = sorted(
            (s, i)
            for i, s in self.trades.seq.items()
            if s > after
            and (not open_only or self.trades[i].status in (TradeStatus.OPEN, TradeStatus.PENDING))
        )[:limit]
        self.rows_read += len(changed)
        top = changed[-1][0] if changed else after
        return [self.trades[i] for _, i in changed], top

    async def trades_by_deals(self, deal_ids: list[str]) -> dict[str, TradeRecord]:
        wanted = set(deal_ids)
        return {t.deal_id: t for t in self.trades.values() if t.deal_id in wanted}

    async def get_alerts(self, alert_ids: list[int]) -> dict[int, AlertRecord]:
        return {i: self.alerts[i] for i in alert_ids if i in self.alerts}

    async def get_trade(self, trade_id: int) -> TradeRecord | None:
        return self.trades.get(trade_id)

    async def get_trade_by_deal(self, deal_id: str) -> TradeRecord | None:
        return next((t for t in self.trades.values() if t.deal_id == deal_id), None)

    async def get_alert(self, alert_id: int) -> AlertRecord | None:
        return self.alerts.get(alert_id)

    async def add_trade(self, trade: TradeRecord) -> TradeRecord:
        stored = dataclasses.replace(trade, id=len(self.trades) + 1)
        self.trades[stored.id or 0] = stored
        return stored

    async def add_alert(self, alert: AlertRecord) -> AlertRecord:
        self.alerts[alert.id] = alert
        return alert

    async def adopt_trade(self, trade_id: int, **fields: Any) -> None:
        if "status" in fields:
            fields["status"] = TradeStatus(fields["status"])
        self.trades[trade_id] = dataclasses.replace(self.trades[trade_id], **fields)

    async def adopt_trades(self, updates: list[tuple[int, dict[str, Any]]]) -> None:
        for trade_id, fields in updates:
            await self.adopt_trade(trade_id, **fields)

    async def save_progress(self, trade_id: int, best_price: float, durable: bool = True) -> None:
        self.progress.append((trade_id, best_price))
        self.trades[trade_id] = dataclasses.replace(self.trades[trade_id], best_price=best_price)

    async def save_progress_many(
        self, prices: list[tuple[int, float]], durable: bool = True
    ) -> None:
        for trade_id, price in prices:
            await self.save_progress(trade_id, price)

    async def write_amendment(
        self,
        trade_id: int,
        deal_id: str,
        requested: float,
        previous: float | None,
        reason: str,
        ts: datetime,
        durable: bool = True,
    ) -> int:
        aid = len(self.amendments) + 1
        self.amendments[aid] = AmendmentRecord(
            aid, trade_id, deal_id, requested, previous, reason, AmendState.PENDING, created_at=ts
        )
        return aid

    async def update_amendment(
        self,
        amendment_id: int,
        state: AmendState,
        ts: datetime,
        broker_ref: str | None = None,
        error: str | None = None,
        durable: bool = True,
    ) -> None:
        a = self.amendments[amendment_id]
        self.amendments[amendment_id] = dataclasses.replace(
            a, state=state, broker_ref=broker_ref, error=error, updated_at=ts
        )

    async def confirm_amendment(
        self,
        amendment_id: int,
        level: float,
        ts: datetime,
        profit_lock: bool = False,
        durable: bool = True,
    ) -> None:
        a = self.amendments[amendment_id]
        self.amendments[amendment_id] = dataclasses.replace(
            a, state=AmendState.CONFIRMED, updated_at=ts
        )
        t = self.trades[a.trade_id]
        self.trades[a.trade_id] = dataclasses.replace(
            t,
            sl_price=level,
            profit_lock_applied_at=t.profit_lock_applied_at or (ts if profit_lock else None),
        )

    async def unfinished_amendments(self) -> list[AmendmentRecord]:
        return [a for a in self.amendments.values() if not a.state.is_final]

    async def close_trade(
        self,
        trade_id: int,
        exit_price: float,
        exit_reason: str,
        pnl_pips: float,
        closed_at: datetime,
        durable: bool = True,
    ) -> None:
        self.trades[trade_id] = dataclasses.replace(
            self.trades[trade_id],
            status=TradeStatus.CLOSED,
            exit_price=exit_price,
            exit_reason=exit_reason,
            pnl_pips=pnl_pips,
            closed_at=closed_at,
        )

    async def set_status(self, trade_id: int, status: str, reason: str | None = None) -> None:
        self.trades[trade_id] = dataclasses.replace(
            self.trades[trade_id], status=TradeStatus(status)
        )

    async def set_method(self, trade_id: int, method: str, fallback_reason: str | None) -> None:
        self.trades[trade_id] = dataclasses.replace(
            self.trades[trade_id],
            trailing_calculation_method=method,
            fallback_reason=fallback_reason,
        )

    async def trades_since(self, since: datetime | None) -> list[TradeRecord]:
        return list(self.trades.values())

    async def record_recalculation(self, rec: StageRecalculation) -> None:
        self.recalculations.append(rec)
        self.trades[rec.trade_id] = dataclasses.replace(
            self.trades[rec.trade_id],
            calculated_stages=rec.new_stages,
            trailing_calculation_method=rec.method,
            fallback_reason=rec.fallback_reason,
        )


class ScriptedBroker:
    """A Broker whose answers are scripted per call: 'ok', 'reject', 'timeout', 'timeout-applied',
    'error', 'ratelimit'. Records every amendment it receives."""

    def __init__(self, script: list[str] | None = None, latency: float = 0.0) -> None:
        self.script = list(script or [])
        self.latency = latency  # trio seconds before an answer (and before it is applied)
        self.positions: dict[str, Position] = {}
        self.calls: list[tuple[str, float, float | None]] = []
        self.applied: list[tuple[str, float]] = []  # every stop the broker really took
        self.fail_reads = 0  # this many position reads fail (503) before they succeed

    async def open_positions(self) -> list[Position]:
        self._read()
        return list(self.positions.values())

    async def get_position(self, deal_id: str) -> Position | None:
        self._read()
        return self.positions.get(deal_id)

    def _read(self) -> None:
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise BrokerUnavailable("503 on /positions")

    async def amend_stop(self, deal_id: str, stop: float, limit: float | None) -> Confirmation:
        self.calls.append((deal_id, stop, limit))
        step = self.script.pop(0) if self.script else "ok"
        if self.latency:
            await trio.sleep(self.latency)
        if step in ("ok", "timeout-applied") and deal_id in self.positions:
            self.positions[deal_id] = dataclasses.replace(self.positions[deal_id], stop=stop)
            self.applied.append((deal_id, stop))
        if step == "reject":
            return Confirmation(False, None, f"ref{len(self.calls)}", "stop too close")
        if step.startswith("timeout"):
            raise BrokerTimeout("no answer")
        if step == "error":
            raise BrokerUnavailable("503")
        if step == "ratelimit":
            raise RateLimited("allowance", retry_after=0.5)
        return Confirmation(True, stop, f"ref{len(self.calls)}")

    async def open_position(self, request: OpenRequest) -> Position:
        raise BrokerUnavailable("scripted broker does not open positions")

    def min_stop_distance_pips(self, epic: str) -> float:
        return 0.0

    def allowance_per_minute(self) -> int | None:
        return None

    async def run(self, emit: EventSink) -> None:
        return None


ONE_EPIC = "CS.D.EURUSD.MINI.IP"


async def one_buy(broker: ScriptedBroker) -> MemoryStore:
    """Trade 1 ("D1"): a BUY from 1.1 with its stop at 1.098, in a new store and at ``broker``."""
    broker.positions["D1"] = Position("D1", ONE_EPIC, Direction.BUY, 1.0, 1.1, 1.098, None)
    store = MemoryStore()
    await store.add_trade(
        TradeRecord("D1", ONE_EPIC, Direction.BUY, entry_price=1.1, sl_price=1.098)
    )
    return store


def one_buy_target(level: float, confirmed: list[float] | None = None) -> AmendTarget:
    """Move trade 1's stop to ``level`` (stage 3); confirmations go to ``confirmed``."""
    on_confirmed = confirmed.append if confirmed is not None else (lambda level: None)
    return AmendTarget(
        1, "D1", ONE_EPIC, level, 1.098, None, Reason.STAGE3, False,
        on_confirmed, lambda why: None, lambda a, b: a > b,
    )  # fmt: skip
