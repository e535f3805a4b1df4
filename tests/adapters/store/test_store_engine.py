"""Database URLs and SQLite connection settings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio

from tests.adapters.store.store_helpers import T0, on_connection, trade
from traild.adapters.store import display_url, migrate_database, open_store, resolve_database_url
from traild.adapters.store.engine import make_engine, normalise_url
from traild.core.errors import StoreError


def test_relative_sqlite_paths_go_under_the_state_dir(tmp_path: Path) -> None:
    url = resolve_database_url("sqlite+aiosqlite:///traild.db", tmp_path)
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'traild.db'}"
    nested = resolve_database_url("sqlite+aiosqlite:///db/x.db", str(tmp_path))
    assert nested == f"sqlite+aiosqlite:///{tmp_path / 'db' / 'x.db'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////var/lib/traild/traild.db",
        "sqlite+aiosqlite:///:memory:",
        "postgresql+asyncpg://traild:secret@db.example:5432/traild",
    ],
)
def test_absolute_sqlite_memory_and_postgres_urls_are_kept(url: str, tmp_path: Path) -> None:
    assert resolve_database_url(url, tmp_path) == url


def test_plain_backend_names_get_their_async_drivers() -> None:
    assert normalise_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert normalise_url("postgresql://u@h/d").drivername == "postgresql+asyncpg"
    with pytest.raises(StoreError, match="unsupported driver 'postgresql\\+psycopg2'"):
        normalise_url("postgresql+psycopg2://u@h/d")
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        normalise_url("mysql://u@h/d")
    with pytest.raises(StoreError, match="invalid database URL"):
        normalise_url("not a url")


def test_display_url_masks_the_password() -> None:
    shown = display_url("postgresql+asyncpg://traild:hunter2@db:5432/traild")
    assert "hunter2" not in shown and "traild:***@db" in shown


async def test_sqlite_connections_use_wal_normal_sync_busy_timeout_and_foreign_keys(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'traild.db'}"  # parent dir is created
    pragmas = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")

    def read(connection: sa.Connection) -> list[object]:
        return [connection.exec_driver_sql(f"PRAGMA {p}").scalar() for p in pragmas]

    with trio.fail_after(30):
        assert await on_connection(url, read) == ["wal", 1, 1000, 0]  # migration engine: FK off
    assert make_engine(url, busy_timeout=2.5).dialect.name == "sqlite"


async def test_foreign_keys_refuse_an_amendment_of_an_unknown_trade(db_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True) as store:
            added = await store.add_trade(trade())
            assert added.id is not None
            with pytest.raises(StoreError, match="refused"):
                await store.write_amendment(added.id + 1, "X", 1.1, None, "stage1", T0)


async def test_migrations_leave_the_process_logging_alone(db_url: str) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    with trio.fail_after(60):
        await migrate_database(db_url)
    assert (list(root.handlers), root.level) == before
