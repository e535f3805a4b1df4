"""The configuration service on a SQLite file without the async stack, for the short commands.

``calc``, ``halt``, ``resume`` and ``config`` read or change a handful of rows; opening the
daemon's store for that (trio, a trio-asyncio loop, aiosqlite's thread, SQLAlchemy's asyncio
extension and ORM) took most of their start-up. Here the same SQL (``config_sql``) runs on a
synchronous SQLAlchemy engine over the standard ``sqlite3`` module, with the same pragmas, the
same ``BEGIN IMMEDIATE`` for a change and the same schema check as ``open_store``.

``BlockingConfigStore`` and the daemon's ``SqlConfigStore`` are one ``ConfigService`` (the
interface, the error policy) over two ways to run a transaction, so a command's code runs
unchanged on either: its coroutine is driven to completion by ``drive``
— nothing in it waits on an event loop, every call completes before it returns. PostgreSQL
keeps the async store (asyncpg is its only driver).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from traild.adapters.store import schema
from traild.adapters.store.config_sql import ConfigService
from traild.adapters.store.engine import (
    BEGIN_OPTION,
    WRITE_BEGIN,
    _is_special_sqlite,
    _lenient_json,
    configure_sqlite,
    describe,
    display_url,
    normalise_url,
)
from traild.core.errors import StoreError

T = TypeVar("T")


def is_sqlite(url: str) -> bool:
    """True for a SQLite URL (these commands can then skip the async store)."""
    return normalise_url(url).get_backend_name() == "sqlite"


class BlockingConfigStore(ConfigService):
    """The configuration service over a synchronous SQLite engine (see the module doc): its
    coroutines never suspend, every call completes before it returns."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    async def _transact(self, fn: Callable[[sa.Connection], T], write: bool) -> T:
        with self._engine.connect() as conn:
            if write:
                conn = conn.execution_options(**{BEGIN_OPTION: WRITE_BEGIN})
            with conn.begin():
                return fn(conn)


@contextmanager
def open_blocking_config(url: str, busy_timeout: float = 1.0) -> Iterator[BlockingConfigStore]:
    """The configuration tables of the SQLite database at ``url`` (an absolute path, as
    ``resolve_database_url`` gives), after the schema check ``open_store`` makes."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise StoreError(f"not a SQLite database: {display_url(parsed)}")
    database = parsed.database or ""
    if not _is_special_sqlite(database):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        parsed.set(drivername="sqlite+pysqlite"),
        json_deserializer=_lenient_json,
        poolclass=sa.pool.StaticPool,  # one connection: the command's whole visit
    )
    configure_sqlite(engine, busy_timeout)
    try:
        try:
            with engine.connect() as conn, conn.begin():
                schema.check(conn)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot open database {display_url(url)}: {describe(exc)}") from exc
        yield BlockingConfigStore(engine)
    finally:
        engine.dispose()


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (its awaits are ``BlockingConfigStore`` calls) to
    its result. A coroutine that does suspend (it awaited real I/O) is a programming error."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a blocking configuration call suspended: it needs the async store")
