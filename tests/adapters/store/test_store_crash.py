"""SIGKILL at random points while amendments are being written: after reopening, every amendment
is absent or consistent, and no stop the store acknowledged as confirmed is lost."""

from __future__ import annotations

import os
import random
import shutil
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
TRADE_IDS = (1, 2, 3)
INITIAL_STOP = 1.0


class Lines:
    """Lines from a byte stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        line = await self.next_or_none()
        assert line is not None, f"crash_writer.py ended unexpectedly: {self._buffer[-300:]!r}"
        return line

    async def next_or_none(self) -> str | None:
        """The next complete line, or None at the end of the stream."""
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


async def template(path: Path) -> None:
    """A migrated database holding the trades the writer amends."""
    url = f"sqlite+aiosqlite:///{path}"
    await migrate_database(url)
    async with open_store(url) as store:
        for trade_id in TRADE_IDS:
            added = await store.add_trade(
                trade(f"D{trade_id}", sl_price=INITIAL_STOP, initial_sl_price=INITIAL_STOP)
            )
            assert added.id == trade_id
    assert not path.with_name(path.name + "-wal").exists()  # checkpointed: one file to copy


async def run_and_kill(url: str, lines_before_kill: int) -> list[str]:
    """One writer process; SIGKILL it after ``lines_before_kill`` acknowledged lines.

    Returns every line it printed (a line printed before it died was acknowledged too)."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(WRITER), url, *map(str, TRADE_IDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    ready, acknowledged = False, list[str]()
    try:
        while not (ready and len(acknowledged) >= lines_before_kill):
            line = await lines.next()
            if line == "ready":
                ready = True
            else:
                acknowledged.append(line)
    finally:
        proc.kill()
        status = await proc.wait()
    assert status == -signal.SIGKILL, "the writer ended before it was killed"
    while (line := await lines.next_or_none()) is not None:
        acknowledged.append(line)
    await proc.stdout.aclose()
    return acknowledged


async def verify(url: str, path: Path, acknowledged: list[str]) -> int:
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = {}
    async with open_store(url) as store:
        for trade_id in TRADE_IDS:
            amendments = await store.amendments_of(trade_id)
            rows.update({a.id: a for a in amendments})
            levels = [a.requested_level for a in amendments]
            assert levels == sorted(levels), "amendments out of order"
            # Every amendment but a trade's newest went all the way to confirmed.
            assert all(a.state is AmendState.CONFIRMED for a in amendments[:-1])
            if amendments and amendments[-1].state is AmendState.SENT:
                assert amendments[-1].broker_ref == f"R{amendments[-1].id}"
            confirmed = [a for a in amendments if a.state is AmendState.CONFIRMED]
            loaded = await store.get_trade(trade_id)
            assert loaded is not None
            expected = confirmed[-1].requested_level if confirmed else INITIAL_STOP
            assert loaded.sl_price == expected, "sl_price disagrees with the confirmed stops"
            assert (loaded.profit_lock_applied_at is not None) == bool(confirmed)
    for line in acknowledged:
        word, amendment_id, of_trade, level = line.split()
        row = rows[int(amendment_id)]  # acknowledged as durable: never lost
        assert (row.trade_id, row.requested_level) == (int(of_trade), float(level))
        if word == "confirmed":
            assert row.state is AmendState.CONFIRMED
        elif word == "sent":
            assert row.state in (AmendState.SENT, AmendState.CONFIRMED)
    return len(rows)


async def test_sigkill_at_random_points_never_loses_a_confirmed_stop(tmp_path: Path) -> None:
    rng = random.Random(20240501)
    seed_db = tmp_path / "template.db"
    written = []
    with trio.fail_after(180):
        await template(seed_db)
        for n in range(TRIALS):
            path = tmp_path / f"crash{n}.db"
            shutil.copyfile(seed_db, path)
            url = f"sqlite+aiosqlite:///{path}"
            acknowledged = await run_and_kill(url, rng.randint(0, 120))
            written.append(await verify(url, path, acknowledged))
    assert sum(written) > TRIALS  # the kills landed while amendments were being written
