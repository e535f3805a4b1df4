"""SIGKILL at random points while amendments are being written: after reopening, every amendment
is absent or consistent, and no stop the store acknowledged as confirmed is lost."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import trio

from tests.adapters.store.store_helpers import trade
from traild.adapters.store import migrate_database, open_store
from traild.core.messages import AmendState

REPO = Path(__file__).resolve().parents[3]
WRITER = Path(__file__).with_name("crash_writer.py")
TRIALS = 24
PARALLEL = 4
TRADES = 3
INITIAL_STOP = 1.0


async def prepare(url: str) -> list[int]:
    await migrate_database(url)
    async with open_store(url) as store:
        ids = []
        for n in range(TRADES):
            added = await store.add_trade(
                trade(f"D{n + 1}", sl_price=INITIAL_STOP, initial_sl_price=INITIAL_STOP)
            )
            assert added.id == n + 1
            ids.append(added.id)
        return ids


async def run_and_kill(url: str, trade_ids: list[int], lines_before_kill: int) -> list[str]:
    """Start the writer, SIGKILL it once it has printed ``lines_before_kill`` lines after ready."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, str(WRITER), url, *map(str, trade_ids)]
    process = await trio.lowlevel.open_process(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO
    )
    assert process.stdout is not None
    buffer = b""
    try:
        while buffer.count(b"\n") < lines_before_kill + 1:
            chunk = await process.stdout.receive_some(65536)
            assert chunk, f"writer exited early: {buffer[-300:]!r}"
            buffer += chunk
        process.send_signal(signal.SIGKILL)
        while chunk := await process.stdout.receive_some(65536):
            buffer += chunk  # what it printed before dying was acknowledged too
    finally:
        process.kill()
        await process.wait()
        await process.stdout.aclose()
    assert process.returncode == -signal.SIGKILL
    lines = buffer.decode().splitlines()
    assert lines[0] == "ready"
    return [line for line in lines[1:] if line.endswith(tuple("0123456789"))]


async def verify(url: str, path: Path, acknowledged: list[str]) -> int:
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    async with open_store(url) as store:
        rows = {}
        for trade_id in range(1, TRADES + 1):
            amendments = await store.amendments_of(trade_id)
            rows.update({a.id: a for a in amendments})
            levels = [a.requested_level for a in amendments]
            assert levels == sorted(levels), "amendments out of order"
            confirmed = [a for a in amendments if a.state is AmendState.CONFIRMED]
            loaded = await store.get_trade(trade_id)
            assert loaded is not None
            expected = confirmed[-1].requested_level if confirmed else INITIAL_STOP
            assert loaded.sl_price == expected, "sl_price disagrees with the confirmed stops"
            assert (loaded.profit_lock_applied_at is not None) == bool(confirmed)
            # Every amendment but the newest of a trade went through to confirmed.
            assert all(a.state is AmendState.CONFIRMED for a in amendments[:-1])
            if amendments and amendments[-1].state is AmendState.SENT:
                assert amendments[-1].broker_ref == f"R{amendments[-1].id}"
        for line in acknowledged:
            word, amendment_id, trade_id, level = line.split()
            row = rows[int(amendment_id)]  # acknowledged: never lost
            assert (row.trade_id, row.requested_level) == (int(trade_id), float(level))
            if word == "confirmed":
                assert row.state is AmendState.CONFIRMED
            elif word == "sent":
                assert row.state in (AmendState.SENT, AmendState.CONFIRMED)
        return len(rows)


async def test_sigkill_at_random_points_never_loses_a_confirmed_stop(tmp_path: Path) -> None:
    rng = random.Random(20240501)
    kill_after = [rng.randint(0, 120) for _ in range(TRIALS)]
    limiter = trio.CapacityLimiter(PARALLEL)
    survived: list[int] = []

    async def trial(n: int) -> None:
        async with limiter:
            path = tmp_path / f"crash{n}.db"
            url = f"sqlite+aiosqlite:///{path}"
            trade_ids = await prepare(url)
            acknowledged = await run_and_kill(url, trade_ids, kill_after[n])
            survived.append(await verify(url, path, acknowledged))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for n in range(TRIALS):
                nursery.start_soon(trial, n)
    assert len(survived) == TRIALS
    assert sum(survived) > TRIALS  # the kills did land while amendments were being written
