"""The ``traild_lease`` table: claims, renewals and releases, each one short transaction.

Times are the database's clock (PostgreSQL's ``clock_timestamp()``, SQLite's ``julianday``),
so daemons on several hosts agree on when a lease expires whatever their own clocks say. A
claim reads the row ``FOR UPDATE`` and writes ``core.lease.claim``'s answer with a conditional
update (the old token in its ``WHERE``) in the same transaction; SQLite's ``BEGIN IMMEDIATE``
serialises claimants the same way. Every operation is bounded by ``timeout``: a lease call
never waits out a database outage (the caller retries, and stops sending meanwhile).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
import trio
from loguru import logger
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from traild.adapters.store.aio import on_loop
from traild.adapters.store.engine import describe, dialect_insert, transaction
from traild.adapters.store.models import TRAILD_LEASE
from traild.adapters.store.rows import RowOp, RowWrite
from traild.adapters.store.writer import Op
from traild.core.errors import FencedWrite, StoreError
from traild.core.lease import Claim, Instance, LeaseRow, Outcome, claim, replayable

T = TypeVar("T")
_L = TRAILD_LEASE.c


def db_now(dialect: str) -> sa.ColumnElement[float]:
    """Seconds since the epoch on the database's clock."""
    if dialect == "postgresql":
        return sa.cast(sa.func.extract("epoch", sa.func.clock_timestamp()), sa.Float)
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


def pid_alive(pid: int) -> bool:
    """The process exists on this host (when in doubt: it does)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process (EPERM): alive
    return True


def _row(mapping: Any) -> LeaseRow:
    return LeaseRow(
        mapping["account"],
        mapping["owner"],
        mapping["home"],
        int(mapping["pid"]),
        int(mapping["token"]),
        float(mapping["acquired_at"]),
        float(mapping["expires_at"]),
    )


def _values(row: LeaseRow) -> dict[str, Any]:
    return {
        "account": row.account,
        "owner": row.owner,
        "home": row.home,
        "pid": row.pid,
        "token": row.token,
        "acquired_at": row.acquired,
        "expires_at": row.expires,
    }


async def current_token(conn: AsyncConnection, account: str) -> int | None:
    """The account's fencing token, read ``FOR SHARE`` (PostgreSQL): a take-over waits until
    the transaction that read it has committed, so no write can land after one."""
    statement = sa.select(_L.token).where(_L.account == account).with_for_update(read=True)
    token = await conn.scalar(statement)
    return None if token is None else int(token)


class _Fenced(RowOp):
    """A write op carrying the lease token its writer held when it was queued; its row
    writes (``parts``, see ``rows.plan``) are the op's own, so fenced writes group as well
    as unfenced ones."""

    __slots__ = ("op", "token")

    def __init__(self, op: Op, token: int) -> None:
        self.op, self.token = op, token

    @property
    def parts(self) -> Sequence[RowWrite] | None:
        return self.op.parts if isinstance(self.op, RowOp) else None

    async def __call__(self, conn: AsyncConnection) -> Any:
        return await self.op(conn)


class Fence:
    """The store's side of the lease: which token its writes carry, and the check that
    refuses, inside each write transaction, a write whose token is older than the lease's.
    Unfenced (``token`` None: the command line, tests) every write passes as before."""

    def __init__(self) -> None:
        self.account: str | None = None
        self.token: int | None = None
        self.predecessor: int | None = None  # the token taken over: its journal records are ours
        self._seen = 0  # the newest token the database has shown: older writes are refused
        self._logged = False
        self.on_refused: Callable[[], None] | None = None  # told when a write is refused

    def hold(self, account: str, token: int, predecessor: int | None) -> None:
        """Carry ``token`` (the lease of ``account``, taken over from ``predecessor``)."""
        self.account, self.token, self.predecessor = account, token, predecessor
        self._seen = max(self._seen, token)

    def wrap(self, op: Op) -> Op:
        return op if self.token is None else _Fenced(op, self.token)

    def replayable(self, record: dict[str, Any]) -> bool:
        """A journal record this tenure may apply (``core.lease.replayable``)."""
        if self.token is None:
            return True
        written = record.get("t")
        return replayable(None if written is None else int(written), self.token, self.predecessor)

    async def check(self, conn: AsyncConnection, ops: list[Op]) -> None:
        """Inside the write transaction: refuse it if an op's token is older than the
        lease's (read ``FOR SHARE``: a take-over cannot commit between check and write)."""
        tokens = [op.token for op in ops if isinstance(op, _Fenced)]
        if not tokens or self.account is None:
            return
        oldest = min(tokens)
        current: int | None = self._seen
        if oldest >= self._seen:  # not known to be superseded: ask the database
            current = await current_token(conn, self.account)
        if current is None or oldest < current:
            self._seen = max(self._seen, oldest + 1, current or 0)
            raise FencedWrite(
                f"the lease of {self.account} is at token {current}, this write carries {oldest}"
            )

    def refused(self, exc: FencedWrite) -> None:
        """Logged once (each refused write is also ``store.write_failed``); the store's owner
        hears of it: it has lost the lease."""
        if not self._logged:
            self._logged = True
            logger.bind(event="store.fenced", account=self.account, fence=self.token).error(
                "the database refuses this daemon's writes: {}", exc
            )
        if self.on_refused is not None:
            self.on_refused()


class SqlLeases:
    """``traild.ports.Leases`` on the store's engine (its own pooled connections: a lease call
    never queues behind the store's writes)."""

    def __init__(self, loop: Any, engine: AsyncEngine, timeout: float = 2.0) -> None:
        self._loop = loop
        self._engine = engine
        self.timeout = timeout

    async def _run(self, fn: Callable[[AsyncConnection], Awaitable[T]], what: str) -> T:
        async def run(engine: AsyncEngine) -> T:
            async with transaction(engine) as conn:
                return await fn(conn)

        try:
            with trio.move_on_after(self.timeout):
                return await on_loop(self._loop, run, self._engine)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"{what} failed: {describe(exc)}") from exc
        raise StoreError(f"{what} failed: no answer within {self.timeout:g} s")

    async def claim(self, account: str, me: Instance, ttl: float) -> Claim:
        """Take the lease of ``account`` if it is free, expired, ours, or left by our own
        crashed previous run; else report its holder."""

        async def run(conn: AsyncConnection) -> Claim:
            now = float(await conn.scalar(sa.select(db_now(conn.dialect.name))) or 0.0)
            found = (
                (
                    await conn.execute(
                        sa.select(TRAILD_LEASE).where(_L.account == account).with_for_update()
                    )
                )
                .mappings()
                .first()
            )
            row = None if found is None else _row(found)
            gone = row is not None and row.home == me.home and not pid_alive(row.pid)
            result = claim(row, account, me, now, ttl, holder_gone=gone)
            if result.outcome is Outcome.ACQUIRED:
                insert = dialect_insert(conn.dialect.name, TRAILD_LEASE)
                insert = insert.values(**_values(result.row)).on_conflict_do_nothing()
                done = await conn.execute(insert)
                if done.rowcount != 1:  # another claimant inserted it first: theirs
                    return await run(conn)
            elif result.outcome is not Outcome.HELD:
                old = result.previous.token if result.previous is not None else result.row.token
                done = await conn.execute(
                    TRAILD_LEASE.update()
                    .where(_L.account == account, _L.token == old)
                    .values(**_values(result.row))
                )
                if done.rowcount != 1:
                    raise StoreError(f"lease of {account} changed under its claim")
            return result

        return await self._run(run, f"claiming the lease of {account}")

    async def renew(self, account: str, me: Instance, token: int, ttl: float) -> LeaseRow | None:
        """Extend our lease by ``ttl`` from now; None when it is no longer ours (taken)."""

        async def run(conn: AsyncConnection) -> LeaseRow | None:
            now = db_now(conn.dialect.name)
            done = await conn.execute(
                TRAILD_LEASE.update()
                .where(_L.account == account, _L.owner == me.owner, _L.token == token)
                .values(expires_at=now + ttl)
                .returning(*TRAILD_LEASE.c)
            )
            found = done.mappings().first()
            return None if found is None else _row(found)

        return await self._run(run, f"renewing the lease of {account}")

    async def release(self, account: str, me: Instance, token: int) -> None:
        """End our lease now (a clean stop): a standby takes over without waiting for it."""

        async def run(conn: AsyncConnection) -> None:
            await conn.execute(
                TRAILD_LEASE.update()
                .where(_L.account == account, _L.owner == me.owner, _L.token == token)
                .values(expires_at=db_now(conn.dialect.name))
            )

        await self._run(run, f"releasing the lease of {account}")

    async def leases(self) -> tuple[float, list[LeaseRow]]:
        """The database's clock now and every lease row (``traild lease``)."""

        async def run(conn: AsyncConnection) -> tuple[float, list[LeaseRow]]:
            now = float(await conn.scalar(sa.select(db_now(conn.dialect.name))) or 0.0)
            rows = (await conn.execute(sa.select(TRAILD_LEASE).order_by(_L.account))).mappings()
            return now, [_row(r) for r in rows]

        return await self._run(run, "reading the leases")
