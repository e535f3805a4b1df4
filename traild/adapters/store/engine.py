"""Engines for SQLite (aiosqlite) and PostgreSQL (asyncpg), and how their failures are classified.

SQLite gets WAL, ``synchronous=NORMAL``, a busy timeout and foreign keys on every connection, and
explicit ``BEGIN`` statements (the sqlite3 module's legacy transaction handling is switched off) so
DDL is transactional and writers can take the lock up front with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from traild.core.errors import StoreError

if TYPE_CHECKING:  # the asyncio extension (and the ORM it imports) loads with the async engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# Execution option naming the statement that opens a SQLite transaction.
BEGIN_OPTION = "traild_sqlite_begin"
WRITE_BEGIN = "BEGIN IMMEDIATE"
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


class CorruptJSON:
    """What a JSON column holds when its text does not parse (never raised: the loader decides)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"CorruptJSON({self.text[:60]!r})"


def _lenient_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return CorruptJSON(text)


def resolve_database_url(url: str, state_dir: str | Path) -> str:
    """Place a relative SQLite file under ``state_dir``; absolute paths and PostgreSQL unchanged."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or _is_special_sqlite(database):
        return url
    path = Path(database).expanduser()
    if path.is_absolute():
        return url
    resolved = parsed.set(database=str((Path(state_dir).expanduser() / path).resolve()))
    return resolved.render_as_string(hide_password=False)


def _is_special_sqlite(database: str) -> bool:
    return not database or database == ":memory:" or database.startswith("file:")


def display_url(url: str | URL) -> str:
    """The URL for messages and logs: password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "<unparseable database URL>"


def normalise_url(url: str) -> URL:
    """``sqlite://`` and ``postgresql://`` get their async drivers; other drivers are refused."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise StoreError(
            "invalid database URL (expected sqlite+aiosqlite:///… or postgresql+asyncpg://…)"
        ) from None
    backend = parsed.get_backend_name()
    wanted = _DRIVERS.get(backend)
    if wanted is None:
        raise StoreError(f"unsupported database {backend!r} in {display_url(parsed)}")
    if parsed.drivername != wanted:
        if parsed.drivername != backend:
            raise StoreError(f"unsupported driver {parsed.drivername!r}: use {wanted}")
        parsed = parsed.set(drivername=wanted)
    return parsed


def make_engine(
    url: str,
    *,
    busy_timeout: float = 1.0,
    foreign_keys: bool = True,
    idle_in_transaction_timeout: float | None = None,
) -> AsyncEngine:
    """An async engine for ``url``; SQLite pragmas are set per connection in a connect event.

    ``idle_in_transaction_timeout`` (PostgreSQL): the server ends a session that sits inside a
    transaction, waiting for its client, longer than this. A daemon frozen in the middle of a
    write (SIGSTOP, a paused VM) keeps its socket open, so without it the row locks it holds —
    the lease row read ``FOR SHARE`` — would block every other claimant until the TCP keepalive
    gives up, hours later. SQLite has no server to do this: see README, one owner per account.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        connect_args: dict[str, Any] = {}
        if idle_in_transaction_timeout is not None:
            ms = max(1, round(idle_in_transaction_timeout * 1000))
            connect_args["server_settings"] = {"idle_in_transaction_session_timeout": str(ms)}
        return create_async_engine(
            parsed, json_deserializer=_lenient_json, connect_args=connect_args
        )
    database = parsed.database or ""
    if not _is_special_sqlite(database):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(parsed, json_deserializer=_lenient_json)
    configure_sqlite(engine.sync_engine, busy_timeout, foreign_keys)
    return engine


def configure_sqlite(engine: Engine, busy_timeout: float, foreign_keys: bool = True) -> None:
    """Every SQLite connection of ``engine`` (async or not) gets the pragmas and explicit
    ``BEGIN`` statements (``BEGIN IMMEDIATE`` under the ``BEGIN_OPTION`` of a write)."""
    pragmas = (
        f"busy_timeout={max(0, round(busy_timeout * 1000))}",
        "journal_mode=WAL",
        "synchronous=NORMAL",
        f"foreign_keys={'ON' if foreign_keys else 'OFF'}",
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get(BEGIN_OPTION, "BEGIN"))


# PostgreSQL SQLSTATEs that retrying later can cure (prefixes): connection exceptions (08),
# insufficient resources (53), operator intervention (57P: admin/crash shutdown, cannot connect
# now; 57014: statement timeout), serialization failure and deadlock (40001, 40P01), lock not
# available (55P03) and a read-only transaction (25006: a standby, or
# default_transaction_read_only set during maintenance).
_TRANSIENT_SQLSTATES = ("08", "53", "57P", "57014", "40001", "40P01", "55P03", "25006")
# 55000 is a broad class; only "database ... is not currently accepting connections"
# (ALTER DATABASE ... ALLOW_CONNECTIONS false) is an outage.
_NOT_ACCEPTING = "not currently accepting connections"


# SQLite primary result codes that retrying later can cure: busy, locked, out of memory,
# read-only (a remounted disk), interrupted, I/O error, disk full, cannot open, lock protocol,
# schema changed under a statement. Any other code (SQLITE_ERROR: "no such column", "no such
# table", a syntax error; a constraint; a corrupt file) fails the same way on every retry.
_TRANSIENT_SQLITE = frozenset(
    (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_SCHEMA,
    )
)


@asynccontextmanager
async def transaction(engine: AsyncEngine, *, write: bool = True) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in one transaction (asyncio-flavoured: run it on the store's loop).
    A ``write`` transaction takes SQLite's write lock up front (``BEGIN IMMEDIATE``), so it
    waits for the lock at its start instead of failing to upgrade a read lock later."""
    async with engine.connect() as conn:
        if write:
            await conn.execution_options(**{BEGIN_OPTION: WRITE_BEGIN})
        async with conn.begin():
            yield conn


def dialect_insert(dialect: str, table: Any) -> Any:
    """An INSERT on ``table`` with its dialect's ``ON CONFLICT`` clauses. The PostgreSQL dialect
    is imported only for PostgreSQL (a short command on SQLite does not pay for it)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def is_transient(exc: BaseException) -> bool:
    """True when retrying later can succeed: locked, unreachable, disconnected, read-only
    (SQLite disk or PostgreSQL transaction), connections refused or terminated. A SQLite error
    is judged by its result code, not by its class (sqlite3 raises OperationalError for a
    locked database and for a missing column alike)."""
    if isinstance(exc, sa_exc.DBAPIError):
        code = _sqlite_code(exc.orig)
        if code is not None:
            return code in _TRANSIENT_SQLITE
        if exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        ):
            return True
        return _transient_orig(exc.orig)
    if isinstance(exc, OSError | sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    return _transient_orig(exc)


def _sqlite_code(orig: BaseException | None) -> int | None:
    """The primary result code of a sqlite3 error (None: not SQLite, or no code known)."""
    code = getattr(orig, "sqlite_errorcode", None) if isinstance(orig, sqlite3.Error) else None
    return code & 0xFF if isinstance(code, int) else None


def _transient_orig(orig: BaseException | None) -> bool:
    """The driver's own error: asyncpg's (or SQLAlchemy's adaptation) carries ``sqlstate``."""
    if orig is None:
        return False
    if isinstance(orig, OSError | ConnectionError):
        return True
    state = getattr(orig, "sqlstate", None)
    if not isinstance(state, str):
        return False
    if state == "55000":
        return _NOT_ACCEPTING in str(orig)
    return state.startswith(_TRANSIENT_SQLSTATES)


def describe(exc: BaseException) -> str:
    """One line for logs and statistics: the driver's error without SQL or parameters."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first[:200]}"
