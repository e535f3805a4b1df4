"""The configuration service without the async stack (``config_blocking``), for the short
commands on SQLite: the same rows, versions, audit trail and refusals as the async store, on
the same file, both ways round; the same schema check; a locked file fails after the busy
timeout (no wait for ever); and a command's coroutine must not suspend."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from traild.adapters.store import ConfigConflict, migrate_database, open_store
from traild.adapters.store.config_blocking import (
    BlockingConfigStore,
    drive,
    is_sqlite,
    open_blocking_config,
)
from traild.core.errors import SchemaOutOfDate, StoreError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 2, 9, 30, tzinfo=UTC)
LOCK = ("EURUSD", "regular.stage1_lock")


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'traild.db'}"
    trio.run(migrate_database, url)
    return url


def _rows(overrides: list) -> list[tuple]:
    return [(o.scope, o.key, o.value, o.updated_at, o.updated_by) for o in overrides]


def test_both_stores_read_and_write_the_same_rows_on_one_file(url: str) -> None:
    with open_blocking_config(url) as blocking:
        assert drive(blocking.config_version()) == 0
        first = drive(
            blocking.apply_changes(
                {LOCK: 9.5, ("trailing", "dynamic_trailing_pairs"): ["X"]},
                "alice",
                T0,
                expected_version=0,
            )
        )

    async def async_side() -> tuple:
        async with open_store(url) as store:
            cs = store.config_store()
            version, overrides = await cs.config_overrides()
            second = await cs.apply_changes(
                {("EURUSD", "regular.stage1_lock"): None, ("daemon", "halt"): True},
                "bob",
                T1,
                expected_version=version,
            )
            history = await cs.config_history()
            return version, overrides, second, history, await cs.config_overrides()

    version, seen_async, second, history_async, after_async = trio.run(async_side)
    assert version == first[-1].id
    assert _rows(seen_async) == [
        ("EURUSD", "regular.stage1_lock", 9.5, T0, "alice"),
        ("trailing", "dynamic_trailing_pairs", ["X"], T0, "alice"),
    ]
    with open_blocking_config(url) as blocking:
        after = drive(blocking.config_overrides())
        history = drive(blocking.config_history())
        assert drive(blocking.config_history("EURUSD", 1)) == [second[0]]
    assert after[0] == after_async[0] == second[-1].id
    assert (
        _rows(after[1])
        == _rows(after_async[1])
        == [
            ("daemon", "halt", True, T1, "bob"),
            ("trailing", "dynamic_trailing_pairs", ["X"], T0, "alice"),
        ]
    )
    assert history == history_async == [*first, *second]
    assert [(c.path, c.old, c.new) for c in history] == [
        ("pairs.EURUSD.regular.stage1_lock", None, 9.5),
        ("trailing.dynamic_trailing_pairs", None, ["X"]),
        ("pairs.EURUSD.regular.stage1_lock", 9.5, None),
        ("daemon.halt", None, True),
    ]


def test_a_stale_version_is_refused_and_writes_nothing(url: str) -> None:
    with open_blocking_config(url) as blocking:
        drive(blocking.apply_changes({("EURUSD", "regular.stage1_lock"): 9.5}, "a", T0, 0))
        with pytest.raises(ConfigConflict, match="changed meanwhile"):
            drive(blocking.apply_changes({("EURUSD", "regular.stage1_lock"): 7.0}, "b", T1, 0))
        version, overrides = drive(blocking.config_overrides())
    assert version == 1 and [o.value for o in overrides] == [9.5]


def test_a_change_to_the_same_value_is_not_audited(url: str) -> None:
    with open_blocking_config(url) as blocking:
        drive(blocking.apply_changes({("EURUSD", "regular.stage1_lock"): 9.5}, "a", T0, 0))
        assert drive(blocking.apply_changes({LOCK: 9.5}, "a", T1, 1)) == []
        assert drive(blocking.config_version()) == 1


def test_a_schema_behind_head_is_refused_like_the_store_does(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    with pytest.raises(SchemaOutOfDate, match="traild migrate"), open_blocking_config(url):
        pass


def test_a_file_that_is_not_a_database_is_one_store_error(tmp_path: Path) -> None:
    path = tmp_path / "traild.db"
    path.write_bytes(b"this is not a SQLite database, just some text" * 100)
    with (
        pytest.raises(StoreError, match="cannot open database"),
        open_blocking_config(f"sqlite:///{path}"),
    ):
        pass


def test_a_locked_file_fails_after_the_busy_timeout_and_writes_nothing(url: str) -> None:
    holder = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with open_blocking_config(url, busy_timeout=0.05) as blocking:
            assert drive(blocking.config_version()) == 0  # WAL: readers are not blocked
            with pytest.raises(StoreError, match=r"writing the configuration failed.*locked"):
                drive(blocking.apply_changes({("daemon", "halt"): True}, "a", T0, 0))
    finally:
        holder.rollback()
        holder.close()
    with open_blocking_config(url) as blocking:
        assert drive(blocking.config_overrides()) == (0, [])


def test_only_sqlite_urls_take_the_blocking_path() -> None:
    assert is_sqlite("sqlite+aiosqlite:////tmp/x.db") and is_sqlite("sqlite:////tmp/x.db")
    assert not is_sqlite("postgresql+asyncpg://u@127.0.0.1/test")
    with (
        pytest.raises(StoreError, match="not a SQLite database"),
        open_blocking_config("postgresql://u@127.0.0.1/test"),
    ):
        pass


def test_a_coroutine_that_suspends_is_a_programming_error() -> None:
    async def suspends() -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(RuntimeError, match="suspended"):
        drive(suspends())


def test_the_blocking_store_has_the_async_store_s_interface() -> None:
    from traild.adapters.store.config_store import SqlConfigStore

    public = {n for n in dir(SqlConfigStore) if not n.startswith("_")}
    assert public == {n for n in dir(BlockingConfigStore) if not n.startswith("_")}
    assert {"config_version", "config_overrides", "config_history", "apply_changes"} <= public
