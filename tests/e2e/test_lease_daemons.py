"""Two real daemons on one database (issue #22): one owns the account, the other stands by;
kill -9 of the owner hands the account over within the lease's ttl and every trade still ends
as ``traild simulate`` says; a zombie owner (SIGSTOP past its ttl) sends and writes nothing
after the take-over; ``traild halt`` from the standby's host reaches the owner."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.daemon_helpers import EPIC, _env, slice_ticks, write_config
from tests.e2e.replay_trades import (
    OpenTrade,
    open_trades,
    outcome_of_row,
    outcome_of_simulation,
    simulated,
)
from tests.e2e.test_database_outages import COLUMNS, Daemon, _pg, _traild, engine, running

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
TTL = 2.0
SPEED = 3000.0  # the 7.7 hours of the slice in about 9 s
SLOW = 200.0  # about 140 s: the halt test stops its daemons itself, whatever the machine's load
__all__ = ["engine"]  # the fixture: ("sqlite", "") or ("postgresql", a throw-away database)


@pytest.fixture
def ticks(tmp_path: Path, shared_data_dir: Path) -> Path:
    src = shared_data_dir / "ticks" / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
    return slice_ticks(src, tmp_path / "eurusd.csv", 10_000, start=2_000)


def _configs(tmp_path: Path, ticks: Path, url: str, speed: float) -> tuple[Path, Path]:
    """Two hosts' configurations: their own state directories (journal, HALT), one database."""
    out = []
    for host in ("a", "b"):
        extra = f'lease_ttl_s = {TTL}\n[database]\nurl = "{url}"\npoll_interval_s = 0.2\n'
        config = write_config(tmp_path / f"{host}.toml", tmp_path / host, [ticks], [EPIC], extra)
        text = config.read_text().replace(
            "stop_at_end = true", f"stop_at_end = true\nspeed = {speed}"
        )
        config.write_text(text)
        out.append(config)
    return out[0], out[1]


async def _database(
    tmp_path: Path,
    ticks: Path,
    engine: tuple[str, str],
    trades: list[OpenTrade],
    speed: float = SPEED,
) -> tuple[Path, Path, Any]:
    """Both configurations, the database migrated with ``trades`` handed over; its SQL."""
    kind, name = engine
    if kind == "sqlite":
        path = tmp_path / "shared.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    a, b = _configs(tmp_path, ticks, url, speed)
    await _traild("migrate", "--config", str(a))

    async def sql(*statements: str) -> list[tuple[Any, ...]]:
        if kind == "postgresql":
            return await _pg(name, *statements)

        def run() -> list[tuple[Any, ...]]:
            with closing(sqlite3.connect(path)) as conn, conn:
                rows: list[Any] = []
                for statement in statements:
                    rows = conn.execute(statement).fetchall()
                return [tuple(r) for r in rows]

        return await trio.to_thread.run_sync(run)

    await sql(*(t.insert_sql() for t in trades))
    return a, b, sql


async def _freeze(daemon: Daemon, engine: tuple[str, str], tmp_path: Path) -> float:
    """SIGSTOP ``daemon``; when. On PostgreSQL at any moment: frozen inside a write transaction,
    its session is ended by the server (``idle_in_transaction_session_timeout``), so its locks
    go. SQLite has no server to do that: a process stopped inside its write transaction keeps
    the file's lock until it is resumed or killed (README), so the test stops it while the test
    itself holds the write lock — between two of the daemon's transactions."""
    if engine[0] == "postgresql":
        daemon.proc.send_signal(signal.SIGSTOP)
        return datetime.now().timestamp()

    def between_transactions() -> float:
        with closing(sqlite3.connect(tmp_path / "shared.db", isolation_level=None)) as conn:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("BEGIN IMMEDIATE")
            daemon.proc.send_signal(signal.SIGSTOP)
            stopped = datetime.now().timestamp()
            conn.execute("ROLLBACK")
        return stopped

    return await trio.to_thread.run_sync(between_transactions)


def _ts(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()


def _first(daemon: Daemon, event: str) -> dict[str, Any]:
    return next(r for r in daemon.records if r["event"] == event)


def _events(daemon: Daemon) -> list[str]:
    return [r["event"] for r in daemon.records]


async def _check_outcomes(config: Path, ticks: Path, trades: list[OpenTrade], sql: Any) -> None:
    rows = {
        r[0]: dict(zip(COLUMNS.split(", "), r, strict=True))
        for r in await sql(f"SELECT {COLUMNS} FROM trade_log")
    }
    for trade in trades:
        sim = simulated(config, ticks, trade)
        assert outcome_of_row(rows[trade.deal_id]) == outcome_of_simulation(sim, trade), trade
    assert await sql("SELECT id FROM stop_amendment WHERE state IN ('pending', 'sent')") == []


def _standby_did_nothing(standby: Daemon) -> None:
    """Before its take-over a standby adopts, streams, amends and writes nothing."""
    before = _events(standby)[: _events(standby).index("lease.taken_over")]
    assert set(before) <= {"daemon.started", "lease.waiting"}, before


async def test_kill_9_of_the_owner_hands_the_account_to_the_standby_within_the_ttl(
    tmp_path: Path, ticks: Path, engine: tuple[str, str]
) -> None:
    trades = open_trades(ticks, 30, seed=5, within=0.9)
    with trio.fail_after(240):
        a, b, sql = await _database(tmp_path, ticks, engine, trades)
        async with running(a) as owner:
            await owner.until("daemon.ready")
            async with running(b) as standby:
                await standby.until("lease.waiting")
                await owner.until("trade.closed", 4)
                killed = datetime.now().timestamp()
                owner.proc.kill()
                assert await owner.proc.wait() == -signal.SIGKILL
                await standby.until("lease.taken_over")
                assert await standby.proc.wait() == 0  # the replay ran to its end
    taken = _first(standby, "lease.taken_over")
    assert _ts(taken) - killed <= TTL + 2.0
    assert taken["previous_fence"] == 1 and taken["fence"] == 2
    assert taken["previous_owner"] == _first(owner, "lease.acquired")["owner"]
    _standby_did_nothing(standby)
    await _check_outcomes(b, ticks, trades, sql)
    tokens = await sql(
        "SELECT lease_token, MIN(id), MAX(id) FROM stop_amendment GROUP BY lease_token"
    )
    spans = {token: (low, high) for token, low, high in tokens}
    assert set(spans) == {1, 2} and spans[1][1] < spans[2][0]  # one owner after the other


async def test_a_zombie_owner_sends_and_writes_nothing_after_the_take_over(
    tmp_path: Path, ticks: Path, engine: tuple[str, str]
) -> None:
    trades = open_trades(ticks, 30, seed=6, within=0.9)
    with trio.fail_after(240):
        a, b, sql = await _database(tmp_path, ticks, engine, trades)
        async with running(a) as zombie:
            await zombie.until("daemon.ready")
            async with running(b) as successor:
                await successor.until("lease.waiting")
                await zombie.until("stop.confirmed", 3)
                paused = await _freeze(zombie, engine, tmp_path)
                try:
                    await successor.until("lease.taken_over")
                    await successor.until("stop.confirmed", 3)  # the successor trades
                finally:
                    zombie.proc.send_signal(signal.SIGCONT)
                assert await zombie.proc.wait() == 75  # lease lost: systemd restarts it
                assert await successor.proc.wait() == 0
    names = _events(zombie)
    assert "lease.lost" in names and "daemon.stopped" in names
    after = [r for r in zombie.records if _ts(r) >= paused]
    assert not [r for r in after if r["event"] in ("stop.requested", "trade.adopted")]
    refused = [r for r in zombie.records if r["event"] == "store.write_failed"]
    assert all("token" in str(r.get("error")) for r in refused)
    assert ("store.fenced" in names) == bool(refused)
    _standby_did_nothing(successor)
    await _check_outcomes(b, ticks, trades, sql)  # nothing of the zombie's landed over it
    late = await sql(
        "SELECT COUNT(*) FROM stop_amendment WHERE lease_token = 1 AND id > "
        "(SELECT MIN(id) FROM stop_amendment WHERE lease_token = 2)"
    )
    assert late == [(0,)]


async def test_halt_from_the_standbys_host_reaches_the_owner_and_a_clean_stop_hands_over(
    tmp_path: Path, ticks: Path
) -> None:
    trades = open_trades(ticks, 10, seed=7, within=0.9)
    with trio.fail_after(240):
        a, b, _ = await _database(tmp_path, ticks, ("sqlite", ""), trades, SLOW)
        async with running(a) as owner:
            await owner.until("daemon.ready")
            async with running(b) as standby:
                await standby.until("lease.waiting")
                listed = await trio.run_process(
                    [sys.executable, "-m", "traild", "lease", "--json", "--config", str(b)],
                    capture_stdout=True,
                    env=_env(None),
                )
                (lease,) = json.loads(listed.stdout)["leases"]
                owned_by = _first(owner, "lease.acquired")["owner"]
                assert (lease["account"], lease["owner"]) == ("paper", owned_by)
                assert (lease["fencing_token"], lease["state"]) == (1, "held")
                await _traild("halt", "--config", str(b))  # host b: not the owner's HALT file
                await owner.until("killswitch.engaged")
                assert not (tmp_path / "a" / "HALT").exists()
                await _traild("resume", "--config", str(b))
                await owner.until("killswitch.released")
                owner.proc.send_signal(signal.SIGTERM)
                assert await owner.proc.wait() == 0
                stopped = datetime.now().timestamp()
                await standby.until("lease.taken_over")
                assert _ts(_first(standby, "lease.taken_over")) - stopped <= TTL
                standby.proc.send_signal(signal.SIGTERM)
                assert await standby.proc.wait() == 0
    assert "lease.released" in _events(owner)
