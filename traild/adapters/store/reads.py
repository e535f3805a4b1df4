"""The store's reads: the queries of ``traild.ports.TradeStore`` and the read-retry policy.

Reads go straight to the database on a pooled connection (they do not queue behind the
writer, so a read does not see a write still queued). A read that fails transiently, or takes
longer than ``read_timeout``, is retried with back-off for up to ``read_wait`` seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
import trio
from loguru import logger
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from traild.adapters.store import changes, recalcs
from traild.adapters.store.aio import on_loop
from traild.adapters.store.engine import describe, is_transient
from traild.adapters.store.lease import Fence
from traild.adapters.store.models import STOP_AMENDMENT, TRADE_LOG
from traild.adapters.store.records import (
    alert_from_row,
    alert_table,
    amendment_from_row,
    checked,
    one_trade,
    trade_columns,
    trades_from_rows,
)
from traild.adapters.store.tables import UNFINISHED_STATES
from traild.core.errors import StoreError
from traild.core.messages import (
    AlertRecord,
    AmendmentRecord,
    StageRecalculation,
    TradeRecord,
    TradeStatus,
)

T = TypeVar("T")
_OPEN_STATES = (TradeStatus.PENDING.value, TradeStatus.OPEN.value)


class _ReadTimedOut(Exception):
    """A read that did not answer within ``read_timeout`` (a locked table, a dead link)."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _ReadTimedOut) or is_transient(exc)


class StoreReads:
    """The queries on ``engine`` (run on the trio-asyncio ``loop``) and their retry policy."""

    def __init__(
        self,
        loop: Any,
        engine: AsyncEngine,
        fence: Fence,
        read_wait: float = 0.0,
        read_timeout: float = 5.0,
    ) -> None:
        self._loop = loop
        self._engine = engine
        self._fence = fence  # fenced: the daemon's own account's trades only (migration 0009)
        self.read_wait = read_wait  # math.inf: wait out an outage (the daemon); 0: fail at once
        self.read_timeout = read_timeout
        self.alerts = alert_table(set())  # alert_history as this database has it (``prepare``)
        self.trade_rows_read = 0  # trade_log rows read by the daemon's polls (a statistic)
        self._retries = 0

    @property
    def account(self) -> str | None:
        """The account whose trades (and those of none) this store reads; None: every trade."""
        return self._fence.account

    # -- the retry policy --------------------------------------------------------------------
    async def run(
        self,
        query: Callable[[AsyncConnection], Awaitable[T]],
        failure: str = "database read failed",
    ) -> T:
        """``query`` on a pooled connection; transient failures (and reads slower than
        ``read_timeout``) are retried with back-off for up to ``read_wait`` seconds."""
        deadline = trio.current_time() + self.read_wait
        delay = 0.05
        while True:
            try:
                return await self._once(query)
            except (SQLAlchemyError, OSError, _ReadTimedOut) as exc:
                error = describe(exc)
                if not (_retryable(exc) and trio.current_time() + delay <= deadline):
                    raise StoreError(f"{failure}: {error}") from exc
            self._note_retry(error)
            await trio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _once(self, query: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def once(engine: AsyncEngine) -> T:
            async with engine.connect() as conn:
                return await query(conn)

        async def run(engine: AsyncEngine) -> T:
            try:
                return await once(engine)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            return await once(engine)  # the pool dropped its dead connections: one fresh try

        with trio.move_on_after(self.read_timeout):
            return await on_loop(self._loop, run, self._engine)
        raise _ReadTimedOut(f"no answer within {self.read_timeout:g} s (locked or unreachable)")

    def _note_retry(self, error: str) -> None:
        self._retries += 1
        if self._retries % 30 == 1:  # the first, then about once a minute
            logger.bind(event="store.degraded", error=error, retries=self._retries).warning(
                "database read failed ({}); waiting for the database", error
            )

    async def rows(self, statement: sa.Select[Any]) -> Sequence[sa.RowMapping]:
        async def query(conn: AsyncConnection) -> Sequence[sa.RowMapping]:
            rows: Sequence[sa.RowMapping] = (await conn.execute(statement)).mappings().all()
            return rows

        return await self.run(query)

    async def last_amendment_id(self) -> int:
        """The highest stop_amendment id written so far (0: none)."""

        async def last(conn: AsyncConnection) -> int:
            return int(await conn.scalar(sa.select(sa.func.max(STOP_AMENDMENT.c.id))) or 0)

        return await self.run(last)

    # -- the port's queries ------------------------------------------------------------------
    async def load_open_trades(self) -> list[TradeRecord]:
        mine = changes.of_account(self.account)
        rows = await self.rows(_trades().where(TRADE_LOG.c.status.in_(_OPEN_STATES), mine))
        self.trade_rows_read += len(rows)
        return trades_from_rows(rows)

    async def changed_trades(
        self, after: int, limit: int = 1000, open_only: bool = False
    ) -> tuple[list[TradeRecord], int]:
        """More than ``limit`` when needed to finish a transaction's rows. See changes.py."""
        postgres = self._engine.dialect.name == "postgresql"
        account = self.account
        rows = list(await self.rows(changes.page(after, limit, open_only, postgres, account)))
        if rows and len(rows) >= limit:  # never end a page inside one transaction's rows
            last = rows[-1]
            seq, last_id = int(last["change_seq"]), int(last["id"])
            rows += await self.rows(changes.rest(seq, last_id, open_only, account))
        self.trade_rows_read += len(rows)
        top = max((int(row["change_seq"]) for row in rows), default=after)
        return trades_from_rows(rows), top

    async def trades_by_deals(self, deal_ids: Sequence[str]) -> dict[str, TradeRecord]:
        found: dict[str, TradeRecord] = {}
        for chunk in _chunks(list(dict.fromkeys(deal_ids))):
            rows = await self.rows(_trades().where(TRADE_LOG.c.deal_id.in_(chunk)))
            found.update((t.deal_id, t) for t in trades_from_rows(rows))
        return found

    async def get_trade(self, trade_id: int) -> TradeRecord | None:
        return one_trade(await self.rows(_trades().where(TRADE_LOG.c.id == trade_id)))

    async def get_trade_by_deal(self, deal_id: str) -> TradeRecord | None:
        return one_trade(await self.rows(_trades().where(TRADE_LOG.c.deal_id == deal_id)))

    async def trades_since(self, since: datetime | None) -> list[TradeRecord]:
        """Also the trades not yet filled (no opened_at)."""
        statement = _trades()
        if since is not None:
            checked({"since": since})
            opened = TRADE_LOG.c.opened_at
            statement = statement.where(sa.or_(opened >= since, opened.is_(None)))
        return trades_from_rows(await self.rows(statement))

    async def get_alert(self, alert_id: int) -> AlertRecord | None:
        table = self.alerts
        rows = await self.rows(sa.select(table).where(table.c.id == alert_id))
        return alert_from_row(rows[0]) if rows else None

    async def get_alerts(self, alert_ids: Sequence[int]) -> dict[int, AlertRecord]:
        table = self.alerts
        found: dict[int, AlertRecord] = {}
        for chunk in _chunks(sorted(set(alert_ids))):
            rows = await self.rows(sa.select(table).where(table.c.id.in_(chunk)))
            found.update((row["id"], alert_from_row(row)) for row in rows)
        return found

    async def unfinished_amendments(self) -> list[AmendmentRecord]:
        """Amendments whose outcome is not recorded, of this daemon's account's trades."""
        statement = _amendments().where(STOP_AMENDMENT.c.state.in_(UNFINISHED_STATES))
        if self.account is not None:
            mine = sa.select(TRADE_LOG.c.id).where(changes.of_account(self.account))
            statement = statement.where(STOP_AMENDMENT.c.trade_id.in_(mine))
        rows = await self.rows(statement)
        return [amendment_from_row(row) for row in rows]

    async def amendments_of(self, trade_id: int) -> list[AmendmentRecord]:
        """Every amendment of a trade, oldest first (the audit trail)."""
        rows = await self.rows(_amendments().where(STOP_AMENDMENT.c.trade_id == trade_id))
        return [amendment_from_row(row) for row in rows]

    async def recalculations_since(self, since: datetime | None) -> list[StageRecalculation]:
        """Recalculations at/after ``since`` (all when None), oldest first."""
        return recalcs.from_rows(await self.rows(recalcs.select_since(since)))


def _trades() -> sa.Select[Any]:
    return sa.select(*trade_columns()).order_by(TRADE_LOG.c.id)


def _amendments() -> sa.Select[Any]:
    return sa.select(STOP_AMENDMENT).order_by(STOP_AMENDMENT.c.id)


def _chunks(items: list[T], size: int = 500) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
