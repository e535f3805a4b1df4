"""The real daemon stopped inside a database outage, then run again: nothing confirmed is
lost, every trade ends as ``traild simulate`` says (issue #20), on SQLite and PostgreSQL.
The trades are handed over by SQL without ``initial_sl_price``, as the README documents."""

from __future__ import annotations

import signal
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.daemon_helpers import EPIC, write_config
from tests.e2e.replay_trades import (
    OpenTrade,
    open_trades,
    outcome_of_row,
    outcome_of_simulation,
    simulated,
)
from tests.e2e.test_database_outages import (
    COLUMNS,
    _hold_sqlite,
    _pg,
    _traild,
    engine,  # noqa: F401 - the fixture
    running,
    ticks,  # noqa: F401 - the fixture
)
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
EXIT_PENDING = 75


def _without_initial_stop(trade: OpenTrade) -> str:
    return trade.insert_sql(initial=False)


async def _rows(engine_name: str, db: Path, name: str, query: str) -> list[tuple[Any, ...]]:
    if engine_name == "sqlite":
        with closing(sqlite3.connect(db)) as conn:
            return list(conn.execute(query))
    return await _pg(name, query)


async def test_sigterm_inside_an_outage_then_a_restart_loses_nothing(
    tmp_path: Path,
    ticks: Path,  # noqa: F811
    engine: tuple[str, str],  # noqa: F811
) -> None:
    engine_name, name = engine
    state = tmp_path / "state"
    db = state / "traild.db"
    opened = open_trades(ticks, 30, seed=5, within=0.6)
    release = threading.Event()
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            proxy = TcpProxy(5432)
            await nursery.start(proxy.run)
            # lockstep (outcomes equal simulate's); broker latency keeps the replay running
            # through the outage and the SIGTERM
            database = "[database]\nwrite_timeout_s = 0.2\n"
            if engine_name == "postgresql":
                url = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/{name}"
                database += f'url = "{url}"\n'
            database += "[broker]\nlatency_ms = 400\n"
            config = write_config(tmp_path / "traild.toml", state, [ticks], [EPIC], database)
            await _traild("migrate", "--config", str(config))
            if engine_name == "sqlite":
                with closing(sqlite3.connect(db)) as conn, conn:
                    for trade in opened:
                        conn.execute(_without_initial_stop(trade))
            else:
                await _pg(name, *(_without_initial_stop(t) for t in opened))

            async with running(config) as first:
                await first.until("stop.confirmed", 1)
                if engine_name == "sqlite":
                    holder = threading.Thread(target=_hold_sqlite, args=(db, release), daemon=True)
                    holder.start()
                else:
                    proxy.cut()
                await first.until("store.unavailable")  # writes wait in the journal now
                await first.until("heartbeat", first.count("heartbeat") + 3)
                if first.proc.returncode is None:
                    first.proc.send_signal(signal.SIGTERM)
                code = await first.proc.wait()
            release.set()
            if engine_name == "sqlite":
                await trio.to_thread.run_sync(holder.join)
            else:
                await proxy.restore()

            config.write_text(config.read_text().replace("latency_ms = 400", "latency_ms = 0"))
            async with running(config) as second:
                assert await second.proc.wait() == 0
            nursery.cancel_scope.cancel()

    events = [r["event"] for r in first.records]
    assert code == EXIT_PENDING, events[-5:]
    assert "store.journal_pending" in events and "store.writes_lost" not in events
    stopping = events.index("daemon.stopping")
    assert "trade.closed" not in events[stopping:]  # the feed stopped at once
    assert "journal.replaying" in [r["event"] for r in second.records]

    amendments = await _rows(
        engine_name, db, name, "SELECT trade_id, requested_level, state FROM stop_amendment"
    )
    landed = {(t, round(level, 5)) for t, level, state in amendments if state == "confirmed"}
    for record in first.records:
        if record["event"] == "stop.confirmed":
            assert (record["trade_id"], round(record["stop"], 5)) in landed, record
    assert not [a for a in amendments if a[2] in ("pending", "sent")]
    columns = COLUMNS.split(", ")
    rows = {
        r[0]: dict(zip(columns, r, strict=True))
        for r in await _rows(engine_name, db, name, f"SELECT {COLUMNS} FROM trade_log")
    }
    for record in first.records:
        if record["event"] == "trade.closed":
            assert rows[record["deal_id"]]["status"] == "closed", record
    for trade in opened:
        sim = simulated(config, ticks, trade)
        assert outcome_of_row(rows[trade.deal_id]) == outcome_of_simulation(sim, trade), trade
