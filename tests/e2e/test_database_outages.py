"""The real daemon through real database outages: PostgreSQL behind a loopback proxy that is cut
and restored, then made read-only with its backends terminated, while trades close; a locked
``trade_log`` during ``traild halt`` (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trio

from tests.adapters.store.store_helpers import PG_ADMIN_DB, pg_execute
from tests.e2e.daemon_helpers import EPIC, _env, slice_ticks, write_config
from tests.e2e.replay_trades import open_trades, outcome_of_row, outcome_of_simulation, simulated
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
COLUMNS = "deal_id, status, exit_reason, exit_price, pnl_pips, sl_price"


@pytest.fixture
def ticks(tmp_path: Path, shared_data_dir: Path) -> Path:
    src = shared_data_dir / "ticks" / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
    return slice_ticks(src, tmp_path / "eurusd.csv", 10_000, start=2_000)


@pytest.fixture
def pg_db() -> Iterator[str]:
    name = f"traild_e2e_{os.getpid()}_{secrets.token_hex(4)}"
    pg_execute(PG_ADMIN_DB, (f'CREATE DATABASE "{name}"',))
    yield name
    pg_execute(PG_ADMIN_DB, (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',))


class Daemon:
    """``traild run`` as a trio subprocess; its JSON records as they arrive."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.records: list[dict[str, Any]] = []
        self._changed = trio.Event()
        self.ended = False

    async def read(self) -> None:
        assert self.proc.stderr is not None
        buffer = b""
        async for chunk in self.proc.stderr:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"{"):
                    self.records.append(json.loads(line))
            self._changed.set()
            self._changed = trio.Event()
        self.ended = True  # stderr closed: the process is gone, nothing more will come
        self._changed.set()

    def tail(self, n: int = 8) -> str:
        """The last records, for a failure message."""
        return "\n".join(json.dumps(r) for r in self.records[-n:])

    def count(self, event: str) -> int:
        return sum(r["event"] == event for r in self.records)

    async def until_error(self, event: str, text: str) -> None:
        """Until a record ``event`` whose ``error`` mentions ``text``."""
        while not any(r["event"] == event and text in str(r.get("error")) for r in self.records):
            if self.proc.returncode is not None or self.ended:
                raise AssertionError(f"traild exited before {event} with {text!r}")
            await self._changed.wait()

    async def until(self, event: str, n: int = 1) -> None:
        while self.count(event) < n:
            if self.proc.returncode is not None or self.ended:
                raise AssertionError(f"traild exited before {n} x {event}")
            await self._changed.wait()


@asynccontextmanager
async def running(config: Path) -> AsyncIterator[Daemon]:
    cmd = [sys.executable, "-m", "traild", "run", "--config", str(config)]
    proc = await trio.lowlevel.open_process(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(None)
    )
    daemon = Daemon(proc)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(daemon.read)
        try:
            yield daemon
        finally:
            if proc.returncode is None:
                proc.kill()
            with trio.CancelScope(shield=True):  # reaped even when the test timed out
                await proc.wait()


def _terminate(name: str) -> str:
    return (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )


async def _pg(database: str, *statements: str) -> list[tuple[Any, ...]]:
    return await trio.to_thread.run_sync(pg_execute, database, statements)


async def _admin(*statements: str) -> None:
    await _pg(PG_ADMIN_DB, *statements)


async def _traild(*args: str) -> None:
    await trio.run_process([sys.executable, "-m", "traild", *args], env=_env(None))


async def test_postgresql_cut_and_made_read_only_while_trades_close_loses_nothing(
    tmp_path: Path, ticks: Path, pg_db: str
) -> None:
    opened = open_trades(ticks, 40, seed=7, within=0.9)
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            proxy = TcpProxy(5432)
            await nursery.start(proxy.run)
            url = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/{pg_db}"
            extra = f'[database]\nurl = "{url}"\nwrite_timeout_s = 0.2\n'
            config = write_config(
                tmp_path / "traild.toml", tmp_path / "state", [ticks], [EPIC], extra
            )
            # paced (the 7.7 hours in about 18 s): the daemon never waits for the database,
            # so at full speed the replay could end before it met the second outage
            paced = config.read_text().replace(
                "stop_at_end = true", "stop_at_end = true\nspeed = 1500"
            )
            config.write_text(paced)
            await _traild("migrate", "--config", str(config))
            await _pg(pg_db, *(t.insert_sql() for t in opened))
            async with running(config) as daemon:
                await daemon.until("trade.closed", 3)
                proxy.cut()  # connection refused, open links broken
                await daemon.until("store.unavailable", 1)
                await trio.sleep(1.5)
                await proxy.restore()
                await daemon.until("store.recovered", 1)
                await daemon.until("trade.closed", 12)
                await _admin(
                    f'ALTER DATABASE "{pg_db}" SET default_transaction_read_only = on',
                    _terminate(pg_db),
                )
                # (not a count: one outage logs store.unavailable again when its cause changes)
                await daemon.until_error("store.unavailable", "read-only")
                await trio.sleep(1.5)
                await _admin(
                    f'ALTER DATABASE "{pg_db}" RESET default_transaction_read_only',
                    _terminate(pg_db),
                )
                assert await daemon.proc.wait() == 0
            nursery.cancel_scope.cancel()
    names = [r["event"] for r in daemon.records]
    for bad in ("daemon.failed", "store.write_failed", "store.writes_lost"):
        assert bad not in names
    assert names.count("store.recovered") >= 2 and "store.degraded" in names
    errors = " ".join(
        str(r.get("error")) for r in daemon.records if r["event"] == "store.unavailable"
    )
    assert "read-only" in errors
    rows = {
        r[0]: dict(zip(COLUMNS.split(", "), r, strict=True))
        for r in await _pg(pg_db, f"SELECT {COLUMNS} FROM trade_log")
    }
    unfinished = await _pg(
        pg_db, "SELECT id FROM stop_amendment WHERE state IN ('pending', 'sent')"
    )
    assert unfinished == []
    for trade in opened:
        sim = simulated(config, ticks, trade)
        assert outcome_of_row(rows[trade.deal_id]) == outcome_of_simulation(sim, trade), trade


def _hold_sqlite(db: Path, release: threading.Event) -> None:
    with closing(sqlite3.connect(db, isolation_level=None, timeout=30)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE trade_log SET size = size")
        release.wait(60)
        conn.execute("ROLLBACK")


def _hold_pg(name: str, release: threading.Event) -> None:
    async def hold() -> None:
        conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database=name)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE trade_log IN ACCESS EXCLUSIVE MODE")
                await asyncio.get_running_loop().run_in_executor(None, release.wait, 60)
        finally:
            await conn.close()

    asyncio.run(hold())


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """("sqlite", "") or ("postgresql", a throw-away database)."""
    if request.param == "sqlite":
        yield "sqlite", ""
        return
    name = f"traild_e2e_{os.getpid()}_{secrets.token_hex(4)}"
    pg_execute(PG_ADMIN_DB, (f'CREATE DATABASE "{name}"',))
    yield "postgresql", name
    pg_execute(PG_ADMIN_DB, (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',))


async def test_halt_engages_and_heartbeats_go_on_while_trade_log_is_locked(
    tmp_path: Path, ticks: Path, engine: tuple[str, str]
) -> None:
    state = tmp_path / "state"
    database = "[database]\npoll_interval_s = 0.2\n"
    engine_name, name = engine
    if engine_name == "postgresql":
        database += f'url = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"\n'
    config = write_config(tmp_path / "traild.toml", state, [ticks], [EPIC], database)
    text = config.read_text().replace("stop_at_end = true", "stop_at_end = true\nspeed = 300.0")
    config.write_text(text.replace("heartbeat_s = 1.0", "heartbeat_s = 0.2"))
    opened = open_trades(ticks, 40, seed=11, within=0.3)
    release = threading.Event()
    with trio.fail_after(240):
        await _traild("migrate", "--config", str(config))
        if engine_name == "sqlite":
            with closing(sqlite3.connect(state / "traild.db")) as conn, conn:
                for trade in opened:
                    conn.execute(trade.insert_sql())
        else:
            await _pg(name, *(t.insert_sql() for t in opened))
        async with running(config) as daemon:
            await daemon.until("stop.confirmed", 2)
            holder = threading.Thread(
                target=_hold_sqlite if engine_name == "sqlite" else _hold_pg,
                args=(state / "traild.db" if engine_name == "sqlite" else name, release),
                daemon=True,
            )
            holder.start()
            await trio.sleep(0.5)
            beats = daemon.count("heartbeat")
            await _traild("halt", "--config", str(config))
            await daemon.until("killswitch.engaged")
            await daemon.until("heartbeat", beats + 3)  # heartbeats go on during the lock
            engaged_while_locked = not release.is_set()
            release.set()
            await trio.to_thread.run_sync(holder.join)
            if daemon.proc.returncode is None:
                daemon.proc.send_signal(signal.SIGTERM)
            code = await daemon.proc.wait()
            assert code == 0, daemon.tail()
    assert engaged_while_locked
    names = [r["event"] for r in daemon.records]
    engaged = names.index("killswitch.engaged")
    assert "stop.requested" in names[:engaged]
    assert "stop.requested" not in names[engaged:]  # nothing goes out after the halt


async def test_migrate_waits_for_a_database_that_comes_back_and_fails_fast_without_wait(
    tmp_path: Path, ticks: Path, pg_db: str
) -> None:
    """systemd's ExecStartPre: a short outage must not fail the start (nor use up a limit)."""
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            proxy = TcpProxy(5432)
            await nursery.start(proxy.run)
            url = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/{pg_db}"
            config = write_config(
                tmp_path / "traild.toml",
                tmp_path / "state",
                [ticks],
                [EPIC],
                f'[database]\nurl = "{url}"\n',
            )
            migrate = [sys.executable, "-m", "traild", "migrate", "--config", str(config)]
            proxy.cut()
            refused = await trio.run_process(
                migrate, env=_env(None), check=False, capture_stderr=True
            )
            assert refused.returncode != 0
            assert len(refused.stderr.decode().strip().splitlines()) == 1  # one line, no traceback

            async def restore_soon() -> None:
                await trio.sleep(1.5)
                await proxy.restore()

            nursery.start_soon(restore_soon)
            waited = await trio.run_process(
                [*migrate, "--wait", "60"], env=_env(None), check=False, capture_stdout=True
            )
            nursery.cancel_scope.cancel()
    assert waited.returncode == 0
    assert b"(head)" in waited.stdout
