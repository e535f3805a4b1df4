"""Fixtures for the store suite: every engine-level test runs on SQLite and on real PostgreSQL.

PostgreSQL (127.0.0.1:5432, trust auth, user postgres) gets one throw-away database per test run,
dropped at the end; each test starts from an empty ``public`` schema. An unreachable server FAILS
the PostgreSQL half of the suite, it is never skipped.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from loguru import logger

from tests.adapters.store.store_helpers import PG_ADMIN_DB, PG_HOST, PG_PORT, pg_execute, pg_url
from traild.adapters.store import SqlTradeStore, open_store


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = f"traild_store_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        pg_execute(PG_ADMIN_DB, (f'CREATE DATABASE "{name}"',))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_HOST}:{PG_PORT} is required by the store suite: {exc!r}")
    yield name
    pg_execute(PG_ADMIN_DB, (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each engine."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'traild.db'}"
    name: str = request.getfixturevalue("pg_database")
    pg_execute(name, ("DROP SCHEMA public CASCADE", "CREATE SCHEMA public"))
    return pg_url(name)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SqlTradeStore]:
    async with open_store(db_url, migrate=True, write_timeout=10) as opened:
        yield opened


@pytest.fixture
def log_records() -> Iterator[list[Any]]:
    """Loguru records emitted during the test (``record["extra"]["event"]`` etc.)."""
    records: list[Any] = []
    handler = logger.add(lambda message: records.append(message.record), level="DEBUG")
    yield records
    logger.remove(handler)
