"""An in-memory TradeStore for simulations, with non-durable writes that lag.

The daemon sends most of its records without waiting for them to be durable (``durable=False``:
amendment rows, confirmations, closes): they land a little later, and a crash before they land
loses them. This store models exactly that: such a write is applied after a random delay, in
the order it was made (one writer: nothing is reordered), and ``crash()`` drops every write not
yet applied — unless it models the daemon's write-ahead journal (``journal=True``, the
default), which keeps them: they are applied when the next runtime starts, as the journal's
records are. A durable write first applies everything queued before it, then itself (after a
short commit latency). Writes from a runtime the fence says is dead are dropped.

Every applied change of a trade's ``sl_price`` is logged with its trio time (``sl_log``).
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import trio

from traild.core.messages import (
    AlertRecord,
    AmendmentRecord,
    AmendState,
    StageRecalculation,
    TradeRecord,
    TradeStatus,
)
from traild.testing.fence import Fence

_WATCHED = ("status", "trailing_override", "entry_price")
_OPEN = (TradeStatus.OPEN, TradeStatus.PENDING)


class TradeTable(dict[int, TradeRecord]):
    """trade_log with the change sequence the database's triggers keep (what the poll reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.seq: dict[int, int] = {}
        self.last_seq = 0

    def __setitem__(self, key: int, value: TradeRecord) -> None:
        old = self.get(key)
        if old is None or any(getattr(old, f) != getattr(value, f) for f in _WATCHED):
            self.last_seq += 1
            self.seq[key] = self.last_seq
        super().__setitem__(key, value)


class SimStore:
    """A TradeStore whose non-durable writes lag and can be lost; see the module docstring."""

    def __init__(
        self,
        rng: random.Random,
        fence: Fence | None = None,
        lag_mean: float = 0.15,
        lag_max: float = 2.0,
        journal: bool = True,
    ) -> None:
        self.journal = journal
        self.rng = rng
        self.fence = fence or Fence()
        self.lag_mean, self.lag_max = lag_mean, lag_max
        self.trades = TradeTable()
        self.alerts: dict[int, AlertRecord] = {}
        self.amendments: dict[int, AmendmentRecord] = {}
        self.sl_log: dict[int, list[tuple[float, float | None, str]]] = {}
        self.counts: Counter[str] = Counter()
        self._queue: deque[tuple[float, Callable[[], None]]] = deque()
        self._last_at = 0.0
        self._next_amendment = 0

    # -- the lag -----------------------------------------------------------------------------
    def advance(self) -> None:
        """Apply the queued writes whose time has come."""
        now = trio.current_time()
        while self._queue and self._queue[0][0] <= now:
            self._queue.popleft()[1]()

    def crash(self) -> int:
        """The process died: writes not yet applied are lost, or, with the journal, applied
        (before the next runtime reads anything). Returns how many."""
        self.advance()
        pending = len(self._queue)
        if self.journal:
            self.counts["journaled_writes"] += pending
            while self._queue:
                self._queue.popleft()[1]()
            return pending
        self.counts["lost_writes"] += pending
        self._queue.clear()
        return pending

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def _write(self, apply: Callable[[], None], durable: bool) -> None:
        if self.fence.dead():
            await trio.lowlevel.checkpoint()  # the dead runtime is being cancelled
            return
        self.advance()
        if not durable:
            lag = min(self.lag_max, self.rng.expovariate(1.0 / self.lag_mean))
            self._last_at = max(self._last_at, trio.current_time() + lag)
            self._queue.append((self._last_at, apply))
            self.counts["writes_queued"] += 1
            await trio.lowlevel.checkpoint()
            return
        await trio.sleep(self.rng.uniform(0.001, 0.02))  # commit latency
        if self.fence.dead():
            return
        while self._queue:
            self._queue.popleft()[1]()
        apply()
        self.counts["writes_durable"] += 1

    async def _read(self) -> None:
        await trio.lowlevel.checkpoint()
        self.advance()

    def _set_trade(self, trade_id: int, why: str, **fields: Any) -> None:
        old = self.trades[trade_id]
        new = dataclasses.replace(old, **fields)
        self.trades[trade_id] = new
        if "sl_price" in fields and new.sl_price != old.sl_price:
            self.sl_log.setdefault(trade_id, []).append((trio.current_time(), new.sl_price, why))

    def insert(self, trade: TradeRecord) -> TradeRecord:
        """The trading app's insert of an open trade (the integration contract; at once)."""
        stored = dataclasses.replace(trade, id=len(self.trades) + 1)
        assert stored.id is not None
        self.trades[stored.id] = stored
        self.sl_log[stored.id] = [(trio.current_time(), stored.sl_price, "insert")]
        return stored

    # -- reads -------------------------------------------------------------------------------
    async def load_open_trades(self) -> list[TradeRecord]:
        await self._read()
        return [t for t in self.trades.values() if t.status in _OPEN]

    async def changed_trades(
        self, after: int, limit: int = 1000, open_only: bool = False
    ) -> tuple[list[TradeRecord], int]:
        await self._read()
        changed = sorted(
            (s, i)
            for i, s in self.trades.seq.items()
            if s > after and (not open_only or self.trades[i].status in _OPEN)
        )[:limit]
        top = changed[-1][0] if changed else after
        return [self.trades[i] for _, i in changed], top

    async def trades_by_deals(self, deal_ids: Sequence[str]) -> dict[str, TradeRecord]:
        await self._read()
        wanted = set(deal_ids)
        return {t.deal_id: t for t in self.trades.values() if t.deal_id in wanted}

    async def get_alerts(self, alert_ids: Sequence[int]) -> dict[int, AlertRecord]:
        await self._read()
        return {i: self.alerts[i] for i in alert_ids if i in self.alerts}

    async def get_trade(self, trade_id: int) -> TradeRecord | None:
        await self._read()
        return self.trades.get(trade_id)

    async def get_trade_by_deal(self, deal_id: str) -> TradeRecord | None:
        await self._read()
        return next((t for t in self.trades.values() if t.deal_id == deal_id), None)

    async def get_alert(self, alert_id: int) -> AlertRecord | None:
        await self._read()
        return self.alerts.get(alert_id)

    async def unfinished_amendments(self) -> list[AmendmentRecord]:
        await self._read()
        return [a for a in self.amendments.values() if not a.state.is_final]

    async def trades_since(self, since: datetime | None) -> list[TradeRecord]:
        await self._read()
        return list(self.trades.values())

    # -- writes ------------------------------------------------------------------------------
    async def add_trade(self, trade: TradeRecord) -> TradeRecord:
        if self.fence.dead():
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        return self.insert(trade)

    async def add_alert(self, alert: AlertRecord) -> AlertRecord:
        self.alerts[alert.id] = alert
        await trio.lowlevel.checkpoint()
        return alert

    async def adopt_trade(self, trade_id: int, **fields: Any) -> None:
        await self.adopt_trades([(trade_id, fields)])

    async def adopt_trades(self, updates: Sequence[tuple[int, dict[str, Any]]]) -> None:
        def apply() -> None:
            for trade_id, fields in updates:
                f = dict(fields)
                if "status" in f:
                    f["status"] = TradeStatus(f["status"])
                self._set_trade(trade_id, "adopt", **f)

        await self._write(apply, durable=True)

    async def save_progress(self, trade_id: int, best_price: float, durable: bool = True) -> None:
        await self.save_progress_many([(trade_id, best_price)], durable)

    async def save_progress_many(
        self, prices: Sequence[tuple[int, float]], durable: bool = True
    ) -> None:
        def apply() -> None:
            for trade_id, price in prices:
                self._set_trade(trade_id, "progress", best_price=price)

        await self._write(apply, durable)

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
        self._next_amendment += 1
        aid = self._next_amendment

        def apply() -> None:
            self.amendments[aid] = AmendmentRecord(
                aid,
                trade_id,
                deal_id,
                requested,
                previous,
                reason,
                AmendState.PENDING,
                created_at=ts,
            )

        await self._write(apply, durable)
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
        def apply() -> None:
            a = self.amendments.get(amendment_id)
            if a is not None:
                self.amendments[amendment_id] = dataclasses.replace(
                    a, state=state, broker_ref=broker_ref, error=error, updated_at=ts
                )

        await self._write(apply, durable)

    async def confirm_amendment(
        self,
        amendment_id: int,
        level: float,
        ts: datetime,
        profit_lock: bool = False,
        durable: bool = True,
    ) -> None:
        def apply() -> None:
            a = self.amendments.get(amendment_id)
            if a is None:
                return
            self.amendments[amendment_id] = dataclasses.replace(
                a, state=AmendState.CONFIRMED, updated_at=ts
            )
            t = self.trades[a.trade_id]
            self._set_trade(
                a.trade_id,
                "confirm",
                sl_price=level,
                profit_lock_applied_at=t.profit_lock_applied_at or (ts if profit_lock else None),
            )

        await self._write(apply, durable)

    async def close_trade(
        self,
        trade_id: int,
        exit_price: float,
        exit_reason: str,
        pnl_pips: float,
        closed_at: datetime,
        durable: bool = True,
    ) -> None:
        def apply() -> None:
            self._set_trade(
                trade_id,
                "close",
                status=TradeStatus.CLOSED,
                exit_price=exit_price,
                exit_reason=exit_reason,
                pnl_pips=pnl_pips,
                closed_at=closed_at,
            )

        await self._write(apply, durable)

    async def set_status(self, trade_id: int, status: str, reason: str | None = None) -> None:
        await self._write(
            lambda: self._set_trade(trade_id, "status", status=TradeStatus(status)), True
        )

    async def set_method(self, trade_id: int, method: str, fallback_reason: str | None) -> None:
        def apply() -> None:
            self._set_trade(
                trade_id,
                "method",
                trailing_calculation_method=method,
                fallback_reason=fallback_reason,
            )

        await self._write(apply, True)

    async def record_recalculation(self, rec: StageRecalculation) -> None:
        def apply() -> None:
            self._set_trade(
                rec.trade_id,
                "recalc",
                calculated_stages=rec.new_stages,
                trailing_calculation_method=rec.method,
                fallback_reason=rec.fallback_reason,
            )

        await self._write(apply, True)
