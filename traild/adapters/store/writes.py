"""The store's write path and its writes of trades and alerts.

Every write method journals its record first (when the store has a journal), queues its op on
the single writer (``writer.py``, which wraps it in the lease's fence) and waits for it to be
durable (``WriteQueued`` after the write timeout: it stays queued) or, with ``durable=False``,
returns once it is queued. ``WritePath`` holds the journal and the wait, shared with the
amendment log (``amendments.py``); ``TradeWrites`` are the writes of trade_log and alert_history
rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from traild.adapters.store import recalcs
from traild.adapters.store.journal import Journal, JournalError
from traild.adapters.store.lease import Fence
from traild.adapters.store.models import TRADE_LOG
from traild.adapters.store.records import (
    adopt_values,
    alert_table,
    alert_values,
    checked,
    trade_values,
)
from traild.adapters.store.rows import update_one
from traild.adapters.store.writer import NOT_LANDED, Op, Write, WriteQueue
from traild.core.errors import StoreError
from traild.core.messages import AlertRecord, StageRecalculation, TradeRecord, TradeStatus

_PROGRESS = -1  # the writer's coalescing key of the batched best-price write (no trade has it)


class WritePath:
    """What every write method goes through: the journal first, then the writer's queue,
    then the wait for durability."""

    def __init__(self, writer: WriteQueue, fence: Fence, timeout: float) -> None:
        self.writer = writer
        self.fence = fence
        self.timeout = timeout  # how long a caller waits for durability
        self.journal: Journal | None = None
        self.replaying: int | None = None  # the journal record being applied again (start-up)

    def jot(self, kind: str, **fields: Any) -> int | None:
        """Journal a record before its write is queued; its sequence (None: no journal)."""
        if self.replaying is not None:
            return self.replaying
        if self.journal is None:
            return None
        if self.fence.token is not None:
            fields["t"] = self.fence.token
        try:
            return self.journal.append({"k": kind, **fields})
        except JournalError:
            return None  # logged by the journal: the memory queue carries the write alone

    async def settle(
        self, write: Write, durable: bool = True, amendment_id: int | None = None
    ) -> Any:
        """The write's result once durable (WriteQueued after the write timeout: it stays
        queued); without ``durable``, None at once (it lands in order; a refusal is logged)."""
        if not durable:
            return None
        return await self.writer.wait(write, self.timeout, amendment_id)


class TradeWrites:
    """The writes of trade_log and alert_history rows, and the best-price buffer."""

    def __init__(self, path: WritePath) -> None:
        self._path = path
        self._writer = path.writer
        self.alerts = alert_table(set())  # alert_history as this database has it
        self._progress: dict[int, float] = {}  # best prices waiting for save_progress_many

    async def add_trade(self, trade: TradeRecord) -> TradeRecord:
        values = trade_values(trade)
        if self._path.fence.account is not None:  # a daemon's own trade (migration 0009)
            values["account"] = self._path.fence.account

        async def insert(conn: AsyncConnection) -> int:
            statement = TRADE_LOG.insert().values(**values).returning(TRADE_LOG.c.id)
            return int((await conn.execute(statement)).scalar_one())

        async def landed(conn: AsyncConnection) -> Any:
            """The row of this very insert (every value equal), after an unknown outcome."""
            match = [
                TRADE_LOG.c[k] == v
                for k, v in values.items()
                if v is not None and not isinstance(v, dict | list)  # JSON has no "="
            ]
            found = await conn.scalar(sa.select(TRADE_LOG.c.id).where(*match))
            return NOT_LANDED if found is None else int(found)

        write = await self._writer.submit(insert, landed=landed)
        trade_id: int = await self._path.settle(write)
        return replace(trade, id=trade_id)

    async def add_alert(self, alert: AlertRecord) -> AlertRecord:
        """Insert an alert_history row; an ``id`` <= 0 lets the database choose it."""
        table = self.alerts
        values = alert_values(alert, table)

        async def insert(conn: AsyncConnection) -> int:
            statement = table.insert().values(**values).returning(table.c.id)
            return int((await conn.execute(statement)).scalar_one())

        async def landed(conn: AsyncConnection) -> Any:
            """The row of this very insert (every value equal), after an unknown outcome."""
            c = table.c
            match = [c[k].is_(None) if v is None else c[k] == v for k, v in values.items()]
            found = await conn.scalar(sa.select(c.id).where(*match).order_by(c.id.desc()))
            return NOT_LANDED if found is None else int(found)

        write = await self._writer.submit(_insert_once(insert, landed), landed=landed)
        alert_id: int = await self._path.settle(write)
        return replace(alert, id=alert_id)

    async def adopt_trade(self, trade_id: int, **fields: Any) -> None:
        values = adopt_values(fields)
        if values:
            seq = self._path.jot("adopt", trade_id=trade_id, fields=fields)
            # sl_price is written in one lane only (the urgent one, with the amendments that
            # confirm stops), so an adoption queued during an outage never lands after, and
            # over, a later confirmation
            op = update_one(TRADE_LOG, trade_id, values)
            urgent = "sl_price" in values
            await self._path.settle(
                await self._writer.submit(op, trade_id=trade_id, urgent=urgent, seq=seq)
            )

    async def adopt_trades(self, updates: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """One transaction, one statement per set of fields."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for trade_id, fields in updates:
            values = adopt_values(fields)
            if values:
                key = tuple(sorted(values))
                groups.setdefault(key, []).append(
                    {"_id": trade_id, **{f"_v_{k}": v for k, v in values.items()}}
                )
        if not groups:
            return
        seq = self._path.jot("adopt_many", updates=[[t, f] for t, f in updates])

        async def update(conn: AsyncConnection) -> None:
            for names, params in groups.items():
                await conn.execute(_update_many(names), params)

        # one lane for every sl_price write (see adopt_trade)
        urgent = any("sl_price" in names for names in groups)
        await self._path.settle(await self._writer.submit(update, urgent=urgent, seq=seq))

    async def save_progress(self, trade_id: int, best_price: float, durable: bool = True) -> None:
        """A newer value replaces one still queued for the same trade."""
        values = checked({"best_price": best_price})
        seq = self._path.jot("progress", prices=[[trade_id, best_price]])
        op = update_one(TRADE_LOG, trade_id, values)
        write = await self._writer.submit(op, trade_id=trade_id, coalesce=True, seq=seq)
        await self._path.settle(write, durable)

    async def save_progress_many(
        self, prices: Sequence[tuple[int, float]], durable: bool = True
    ) -> None:
        """One statement. Prices wait in one table until written (last value per trade wins),
        so at most one such write is queued whatever the pace."""
        for trade_id, price in prices:
            self._progress[trade_id] = checked({"best_price": price})["best_price"]
        seq = self._path.jot("progress", prices=[[t, p] for t, p in prices])
        op = self._progress_op()
        write = await self._writer.submit(op, trade_id=_PROGRESS, coalesce=True, seq=seq)
        await self._path.settle(write, durable)

    def _progress_op(self) -> Op:
        rows: list[dict[str, Any]] | None = None

        async def update(conn: AsyncConnection) -> None:
            nonlocal rows
            if rows is None:  # taken once: a retry writes the same rows
                rows = [{"_id": k, "_v_best_price": v} for k, v in self._progress.items()]
                self._progress.clear()
            if rows:
                await conn.execute(_update_many(("best_price",)), rows)

        return update

    async def close_trade(
        self,
        trade_id: int,
        exit_price: float,
        exit_reason: str,
        pnl_pips: float,
        closed_at: datetime,
        durable: bool = True,
    ) -> None:
        values = {
            "status": TradeStatus.CLOSED,
            "exit_price": exit_price,
            "exit_reason": exit_reason,
            "pnl_pips": pnl_pips,
            "closed_at": closed_at,
        }
        seq = self._path.jot(
            "close", trade_id=trade_id, exit_price=exit_price, exit_reason=exit_reason,
            pnl_pips=pnl_pips, closed_at=closed_at,
        )  # fmt: skip
        op = update_one(TRADE_LOG, trade_id, checked(values))
        await self._path.settle(await self._writer.submit(op, trade_id=trade_id, seq=seq), durable)

    async def set_status(self, trade_id: int, status: str, reason: str | None = None) -> None:
        """``reason`` is kept as exit_reason when the status is ``closed`` (trade_log has no
        column for the reason of another status: the runtime logs it)."""
        try:
            value = TradeStatus(status)
        except ValueError:
            raise StoreError(f"unknown trade status {status!r}") from None
        values: dict[str, Any] = {"status": value.value}
        if value is TradeStatus.CLOSED and reason is not None:
            values["exit_reason"] = reason
        seq = self._path.jot("status", trade_id=trade_id, status=value.value, reason=reason)
        await self._update_trade(trade_id, values, seq)

    async def set_method(self, trade_id: int, method: str, fallback_reason: str | None) -> None:
        values = {"trailing_calculation_method": method, "fallback_reason": fallback_reason}
        seq = self._path.jot(
            "method", trade_id=trade_id, method=method, fallback_reason=fallback_reason
        )
        await self._update_trade(trade_id, values, seq)

    async def record_recalculation(self, rec: StageRecalculation) -> None:
        row, trade = recalcs.values(rec)
        seq = self._path.jot("recalc", rec=dataclasses.asdict(rec))
        update = update_one(TRADE_LOG, rec.trade_id, trade)

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(recalcs.insert(conn.dialect.name, row))
            await update(conn)

        await self._path.settle(await self._writer.submit(write, trade_id=rec.trade_id, seq=seq))

    async def _update_trade(self, trade_id: int, values: dict[str, Any], seq: int | None) -> None:
        op = update_one(TRADE_LOG, trade_id, values)
        await self._path.settle(await self._writer.submit(op, trade_id=trade_id, seq=seq))


def _update_many(names: tuple[str, ...]) -> sa.Update:
    """An executemany update by id of the columns ``names`` (parameters ``_id``, ``_v_<name>``)."""
    columns = TRADE_LOG.c
    return (
        TRADE_LOG.update()
        .where(columns.id == sa.bindparam("_id"))
        .values({n: sa.bindparam(f"_v_{n}", type_=columns[n].type) for n in names})
    )


def _insert_once(insert: Op, landed: Op) -> Op:
    """An insert without a natural key, safe to retry: run again (its earlier transaction's
    outcome unknown), it first looks for the row it may have written and returns that one."""
    tried = False

    async def op(conn: AsyncConnection) -> Any:
        nonlocal tried
        if tried:
            found = await landed(conn)
            if found is not NOT_LANDED:
                return found
        tried = True
        return await insert(conn)

    return op
