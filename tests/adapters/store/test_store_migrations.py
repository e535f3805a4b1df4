"""Alembic migrations on both engines: empty -> head, legacy trade_log -> head keeping its rows,
and the store's refusal to run on a schema that is not at head."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests.adapters.store.store_helpers import T0, on_connection, raw_sql, trade
from traild.adapters.store import migrate_database, open_store, schema
from traild.adapters.store.models import Base
from traild.adapters.store.tables import VERSION_TABLE
from traild.core.errors import SchemaOutOfDate, StoreError
from traild.core.messages import AmendState, Direction, TradeStatus

SEED_COLUMNS = (
    "atr_at_entry",
    "volatility_regime",
    "market_regime_at_entry",
    "session_at_entry",
    "calculated_stages",
    "trailing_calculation_method",
)


def _columns(connection: sa.Connection, table: str) -> list[str]:
    return [c["name"] for c in sa.inspect(connection).get_columns(table)]


def _legacy_sql(db_url: str, seed_columns: bool) -> list[str]:
    """The trading app's own tables as it created them: no traild tables, naive timestamps."""
    pk = "INTEGER PRIMARY KEY" if db_url.startswith("sqlite") else "SERIAL PRIMARY KEY"
    extra = ""
    if seed_columns:  # the seed plan's ALTER TABLE list, applied by hand
        extra = (
            ", atr_at_entry FLOAT, volatility_regime VARCHAR(20), market_regime_at_entry "
            "VARCHAR(50), session_at_entry VARCHAR(20), calculated_stages JSON, "
            "trailing_calculation_method VARCHAR(50)"
        )
    return [
        f"CREATE TABLE trade_log (id {pk}, deal_id VARCHAR(64) NOT NULL UNIQUE, "
        "epic VARCHAR(64) NOT NULL, direction VARCHAR(8) NOT NULL, size FLOAT NOT NULL, "
        "entry_price FLOAT, sl_price FLOAT, limit_price FLOAT, status VARCHAR(16) NOT NULL, "
        f"opened_at TIMESTAMP, is_scalp_trade BOOLEAN NOT NULL, alert_id INTEGER{extra})",
        f"CREATE TABLE alert_history (id {pk}, epic VARCHAR(64) NOT NULL, atr FLOAT, "
        "volatility_state VARCHAR(20), market_session VARCHAR(20), created_at TIMESTAMP)",
        "INSERT INTO alert_history (epic, atr, volatility_state, market_session, created_at) "
        "VALUES ('CS.D.EURUSD.MINI.IP', 0.0008, 'high', 'london', '2024-05-01 11:59:00')",
        "INSERT INTO trade_log (deal_id, epic, direction, size, entry_price, sl_price, "
        "limit_price, status, opened_at, is_scalp_trade, alert_id) VALUES "
        "('LEGACY-1', 'CS.D.EURUSD.MINI.IP', 'BUY', 1, 1.1, 1.0985, 1.103, 'open', "
        "'2024-05-01 12:00:00', false, 1), "
        "('LEGACY-2', 'CS.D.GBPUSD.MINI.IP', 'SELL', 2, 1.25, 1.252, NULL, 'closed', "
        "'2024-04-30 08:00:00', true, NULL)",
    ]


async def test_migrate_creates_the_head_schema_on_an_empty_database(db_url: str) -> None:
    with trio.fail_after(60):
        assert await migrate_database(db_url) == schema.head_revision() == "0009"

        def inspect(connection: sa.Connection) -> dict[str, Any]:
            inspector = sa.inspect(connection)
            return {
                "tables": set(inspector.get_table_names()),
                "trade_log": _columns(connection, "trade_log"),
                "indexes": {
                    i["name"]
                    for t in ("trade_log", "stop_amendment")
                    for i in inspector.get_indexes(t)
                },
                "revision": schema.current_revision(connection),
            }

        found = await on_connection(db_url, inspect)
    assert {"trade_log", "alert_history", "stop_amendment", VERSION_TABLE} <= found["tables"]
    assert set(found["trade_log"]) == {c.name for c in Base.metadata.tables["trade_log"].columns}
    assert {
        "ix_trade_log_status",
        "ix_stop_amendment_trade_id",
        "ix_stop_amendment_unfinished",
    } <= found["indexes"]
    assert found["revision"] == schema.head_revision()


async def test_models_match_the_migrated_schema(db_url: str) -> None:
    with trio.fail_after(60):
        await migrate_database(db_url)

        def diff(connection: sa.Connection) -> list[Any]:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
            )
            return list(compare_metadata(context, Base.metadata))

        assert await on_connection(db_url, diff) == []


async def test_migrate_twice_is_a_no_op(db_url: str) -> None:
    with trio.fail_after(60):
        assert await migrate_database(db_url) == schema.head_revision()
        assert await migrate_database(db_url) == schema.head_revision()


@pytest.mark.parametrize("seed_columns", [False, True], ids=["plain", "seed-columns-by-hand"])
async def test_legacy_trade_log_is_stamped_and_upgraded_keeping_its_rows(
    db_url: str, seed_columns: bool, log_records: list[dict[str, Any]]
) -> None:
    with trio.fail_after(60):
        await raw_sql(db_url, *_legacy_sql(db_url, seed_columns))
        assert await migrate_database(db_url) == schema.head_revision()
        assert any(r["extra"].get("event") == "store.legacy_schema" for r in log_records)
        async with open_store(db_url) as store:
            first = await store.get_trade_by_deal("LEGACY-1")
            assert first is not None and first.id is not None
            assert (first.direction, first.status, first.entry_price) == (
                Direction.BUY,
                TradeStatus.OPEN,
                1.1,
            )
            assert first.opened_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # naive = UTC
            assert first.calculated_stages is None and first.stop_pips is None
            assert [t.deal_id for t in await store.trades_since(None)] == ["LEGACY-1", "LEGACY-2"]
            alert = await store.get_alert(1)
            assert alert is not None
            assert (alert.volatility_regime, alert.market_session) == ("high", "london")
            assert alert.created_at == datetime(2024, 5, 1, 11, 59, tzinfo=UTC)
            # traild writes to the adopted legacy table like to its own.
            amendment = await store.write_amendment(
                first.id, "LEGACY-1", 1.1001, 1.0985, "profit_lock", T0
            )
            await store.update_amendment(amendment, AmendState.SENT, T0)
            await store.confirm_amendment(amendment, 1.1001, T0, profit_lock=True)
            await store.adopt_trade(first.id, trailing_calculation_method="fixed", opened_at=T0)
            moved = await store.get_trade(first.id)
            assert moved is not None
            assert (moved.sl_price, moved.profit_lock_applied_at, moved.opened_at) == (
                1.1001,
                T0,
                T0,
            )
            with pytest.raises(StoreError):
                await store.add_trade(trade("LEGACY-1"))  # deal_id stays unique


async def test_legacy_trade_log_without_unique_deal_id_gets_one(db_url: str) -> None:
    pk = "INTEGER PRIMARY KEY" if db_url.startswith("sqlite") else "SERIAL PRIMARY KEY"
    with trio.fail_after(60):
        await raw_sql(
            db_url,
            f"CREATE TABLE trade_log (id {pk}, deal_id VARCHAR(64), epic VARCHAR(64), "
            "direction VARCHAR(8))",
            "INSERT INTO trade_log (deal_id, epic, direction) VALUES ('BARE', 'EURUSD', 'SELL')",
        )
        await migrate_database(db_url)
        async with open_store(db_url) as store:
            [bare] = await store.load_open_trades()  # status got its default
            assert (bare.deal_id, bare.size, bare.is_scalp_trade) == ("BARE", 1.0, False)
            with pytest.raises(StoreError):
                await store.add_trade(trade("BARE"))


async def test_legacy_table_that_is_not_a_trade_log_is_refused(db_url: str) -> None:
    with trio.fail_after(60):
        await raw_sql(db_url, "CREATE TABLE trade_log (id INTEGER PRIMARY KEY, note TEXT)")
        with pytest.raises(StoreError, match="trade_log lacks"):
            await migrate_database(db_url)
        await raw_sql(db_url, "DROP TABLE trade_log")
        assert (
            await migrate_database(db_url) == schema.head_revision()
        )  # the failed run left nothing behind


async def test_open_refuses_an_empty_database_until_migrated(db_url: str) -> None:
    with trio.fail_after(60):
        with pytest.raises(SchemaOutOfDate, match="run `traild migrate`"):
            async with open_store(db_url):
                pass
        await migrate_database(db_url)
        async with open_store(db_url) as store:
            assert await store.load_open_trades() == []


async def test_open_refuses_a_schema_behind_head(db_url: str) -> None:
    with trio.fail_after(60):
        await migrate_database(db_url)
        await on_connection(db_url, lambda c: schema.downgrade(c, "0001"))
        with pytest.raises(
            SchemaOutOfDate, match=f"revision 0001, traild needs {schema.head_revision()}"
        ):
            async with open_store(db_url):
                pass
        async with open_store(db_url, migrate=True) as store:  # or migrate on open
            await store.add_trade(trade())


async def test_open_refuses_a_revision_it_does_not_know(db_url: str) -> None:
    with trio.fail_after(60):
        await migrate_database(db_url)
        await raw_sql(db_url, f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
        with pytest.raises(StoreError, match="unknown to this traild"):
            async with open_store(db_url):
                pass


async def test_downgrade_never_drops_the_trading_apps_tables(db_url: str) -> None:
    with trio.fail_after(60):
        await migrate_database(db_url)
        refused = pytest.RaisesExc(RuntimeError, match="never drops")
        with pytest.RaisesGroup(refused, flatten_subgroups=True):  # from the helper's loop
            await on_connection(db_url, lambda c: schema.downgrade(c, "base"))
        tables = await on_connection(db_url, lambda c: sa.inspect(c).get_table_names())
        assert "trade_log" in tables


def test_the_revisions_read_from_the_files_are_alembics() -> None:
    """The schema check reads revisions from the migration files without Alembic (start-up
    time); they must be exactly what Alembic itself sees, head included."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(schema.MIGRATIONS_DIR))
    alembic_chain = {s.revision: s.down_revision for s in scripts.walk_revisions()}
    assert schema.revisions() == alembic_chain
    assert schema.head_revision() == scripts.get_current_head()


async def test_the_schema_check_reads_the_database_revision_as_alembic_does(db_url: str) -> None:
    with trio.fail_after(60):
        await migrate_database(db_url)

        def both(connection: sa.Connection) -> tuple[str | None, str | None]:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return schema.current_revision(connection), context.get_current_revision()

        ours, theirs = await on_connection(db_url, both)
    assert ours == theirs == schema.head_revision()


async def test_opening_a_sqlite_store_imports_neither_alembic_nor_the_postgresql_driver(
    tmp_path: Path,
) -> None:
    """``traild halt`` and friends open the store: checking its schema must not pull Alembic
    (and its Mako templates) or asyncpg in (issue 24: start-up)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'traild.db'}"
    await migrate_database(url)
    code = f"""
import sys, trio
from traild.adapters.store import open_store

async def main():
    async with open_store({url!r}) as store:
        await store.config_store().config_overrides()

trio.run(main)
print(sorted(m for m in ("alembic", "asyncpg", "mako") if m in sys.modules))
"""
    out = await trio.run_process([sys.executable, "-c", code], capture_stdout=True)
    assert out.stdout.decode().strip() == "[]"
