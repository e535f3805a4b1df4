"""The store through real database outages: PostgreSQL behind a loopback proxy that is cut and
restored, PostgreSQL made read-only with its backends terminated, a commit whose outcome is
unknown; and the per-trade override spellings on both engines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tests.adapters.store.store_helpers import (
    T0,
    on_connection,
    pg_execute,
    raw_sql,
    seeded,
    trade,
)
from tests.tcp_proxy import TcpProxy
from traild.adapters.store import SqlTradeStore, WriteQueued, migrate_database, open_store, schema
from traild.core.errors import StoreError
from traild.core.messages import AmendState

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _events(records: list[Any], name: str) -> list[Any]:
    return [r for r in records if r["extra"].get("event") == name]


async def test_reads_and_writes_wait_out_a_cut_link_to_postgresql(
    pg_database: str, log_records: list[Any]
) -> None:
    await trio.to_thread.run_sync(
        pg_execute, pg_database, ("DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            proxy = TcpProxy(5432)
            await nursery.start(proxy.run)
            url = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/{pg_database}"
            await migrate_database(url)
            [trade_id] = await seeded(url, "CUT-1")
            async with open_store(url, write_timeout=0.2, read_wait=float("inf")) as store:
                proxy.cut()
                with pytest.raises(WriteQueued):
                    await store.close_trade(trade_id, 1.1010, "stop", 10.0, T0)
                # a read on the event path waits for the database instead of failing
                read = trio.Event()
                found: list[Any] = []

                async def read_it() -> None:
                    found.append(await store.get_trade_by_deal("CUT-1"))
                    read.set()

                nursery.start_soon(read_it)
                await trio.sleep(1.0)
                assert not read.is_set() and store.statistics().queued_writes == 1
                await proxy.restore()
                await read.wait()
                await store.flush()
                closed = await store.get_trade(trade_id)
            nursery.cancel_scope.cancel()
    assert found[0] is not None and found[0].deal_id == "CUT-1"
    assert closed is not None and closed.status.value == "closed" and closed.exit_price == 1.1010
    assert _events(log_records, "store.write_failed") == []
    assert _events(log_records, "store.recovered")


OUTAGES = {
    # SQLSTATE 25006: writes refused, reads still served
    "read_only": ("SET default_transaction_read_only = on", "RESET default_transaction_read_only"),
    # SQLSTATE 55000 "database ... is not currently accepting connections"
    "no_connections": ("ALLOW_CONNECTIONS false", "ALLOW_CONNECTIONS true"),
}


@pytest.mark.parametrize("outage", sorted(OUTAGES))
async def test_postgresql_refusing_writes_or_connections_queues_writes_until_it_is_back(
    pg_database: str, log_records: list[Any], outage: str
) -> None:
    await trio.to_thread.run_sync(
        pg_execute, pg_database, ("DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    )
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_database}"
    terminate = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{pg_database}' AND pid <> pg_backend_pid()"
    )
    down, up = OUTAGES[outage]
    with trio.fail_after(60):
        await migrate_database(url)
        [trade_id] = await seeded(url, "RO-1")
        async with open_store(url, write_timeout=0.2, read_wait=float("inf")) as store:
            await trio.to_thread.run_sync(
                pg_execute, "test", (f'ALTER DATABASE "{pg_database}" {down}', terminate)
            )
            with pytest.raises(WriteQueued) as queued:
                await store.write_amendment(trade_id, "RO-1", 1.1001, 1.0985, "profit_lock", T0)
            amendment = queued.value.amendment_id
            assert amendment is not None
            with pytest.raises(WriteQueued):
                await store.confirm_amendment(amendment, 1.1001, T0, profit_lock=True)
            await trio.sleep(0.5)
            stats = store.statistics()
            assert stats.queued_writes == 2 and stats.failed_writes == 0
            assert stats.last_error is not None
            assert ("read-only" if outage == "read_only" else "accepting") in stats.last_error
            await trio.to_thread.run_sync(
                pg_execute, "test", (f'ALTER DATABASE "{pg_database}" {up}', terminate)
            )
            await store.flush()
            moved = await store.get_trade(trade_id)
            rows = await store.amendments_of(trade_id)
    assert moved is not None and moved.sl_price == 1.1001
    assert [(r.id, r.state) for r in rows] == [(amendment, AmendState.CONFIRMED)]
    assert _events(log_records, "store.write_failed") == []


def _flaky_commit(store: SqlTradeStore) -> list[int]:
    """The next commit lands, then reports a lost connection (its outcome looks unknown)."""
    real: Callable[[list[Any]], Awaitable[list[Any]]] = store._commit
    calls: list[int] = []

    async def commit(ops: list[Any]) -> list[Any]:
        result = await real(ops)
        calls.append(len(ops))
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost"))
        return result

    store._writer._commit = commit
    return calls


async def test_a_batch_retried_after_an_unknown_commit_outcome_lands_once_without_failures(
    db_url: str, log_records: list[Any]
) -> None:
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True, write_timeout=10) as store:
            added = await store.add_trade(trade("UNK-1"))
            assert added.id is not None
            calls = _flaky_commit(store)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    store.write_amendment, added.id, "UNK-1", 1.1001, 1.0985, "profit_lock", T0
                )
                nursery.start_soon(store.add_trade, trade("UNK-2"))
            rows = await store.amendments_of(added.id)
            trades = await store.trades_since(None)
            stats = store.statistics()
    assert len(calls) >= 2  # the batch really was retried
    assert [r.requested_level for r in rows] == [1.1001]
    assert [t.deal_id for t in trades] == ["UNK-1", "UNK-2"]
    assert (stats.failed_writes, stats.queued_writes) == (0, 0)
    assert _events(log_records, "store.write_failed") == []
    assert _events(log_records, "store.write_landed")


async def test_a_real_duplicate_is_still_refused_after_an_unknown_outcome(db_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True, write_timeout=10) as store:
            first = await store.add_trade(trade("DUP-1"))
            _flaky_commit(store)
            with pytest.raises(StoreError, match="refused"):
                await store.add_trade(trade("DUP-1", entry_price=1.2))
            assert first.id is not None


@pytest.mark.parametrize(
    ("spelling", "meant"),
    [("OFF", "off"), ("Off ", "off"), (" fixed", "fixed"), ("FIXED", "fixed"), ("", None)],
)
async def test_override_spellings_are_normalised_on_both_engines(
    db_url: str, spelling: str, meant: str | None
) -> None:
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True) as store:
            added = await store.add_trade(trade("OVR-1"))
            await raw_sql(
                db_url,
                f"UPDATE trade_log SET trailing_override = '{spelling}' WHERE id = {added.id}",
            )
            (loaded,) = await store.load_open_trades()
    assert loaded.trailing_override == meant


async def test_an_override_that_is_no_switch_is_refused_by_the_database_and_the_store(
    db_url: str,
) -> None:
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True) as store:
            added = await store.add_trade(trade("OVR-2"))
            with pytest.raises(Exception, match=r"(?i)check"):
                await raw_sql(
                    db_url,
                    f"UPDATE trade_log SET trailing_override = 'disable' WHERE id = {added.id}",
                )
            with pytest.raises(StoreError, match="trailing_override must be"):
                await store.add_trade(trade("OVR-3", trailing_override="of"))
            with pytest.raises(StoreError, match="trailing_override must be"):
                await store.adopt_trade(added.id or 0, trailing_override="halt")
            assert store.statistics().queued_writes == 0


async def test_migration_0003_normalises_existing_overrides_and_clears_unknown_ones(
    db_url: str,
) -> None:
    def to_0002(conn: Any) -> None:
        schema.upgrade(conn)
        schema.downgrade(conn, "0002")

    with trio.fail_after(60):
        await on_connection(db_url, to_0002)
        await raw_sql(
            db_url,
            "INSERT INTO trade_log (deal_id, epic, direction, status, trailing_override) VALUES "
            "('A', 'EURUSD', 'BUY', 'open', 'OFF '), ('B', 'EURUSD', 'BUY', 'open', 'nope'), "
            "('C', 'EURUSD', 'BUY', 'open', ' Fixed')",
        )
        assert await migrate_database(db_url) == schema.head_revision()
        rows = await raw_sql(db_url, "SELECT deal_id, trailing_override FROM trade_log ORDER BY id")
    assert rows == [("A", "off"), ("B", None), ("C", "fixed")]
    assert make_url(db_url).get_backend_name() in ("sqlite", "postgresql")
