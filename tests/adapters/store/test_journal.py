"""The local write-ahead journal: appends survive the process, acks bound it, a torn line or
a full disk costs nothing confirmed (issue #20)."""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from traild.adapters.store import journal as journal_module
from traild.adapters.store.journal import Journal, JournalError, JournalFull, read_journal

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_records_not_acknowledged_are_returned_at_the_next_open(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    assert j.open() == []
    a = j.append({"k": "amend", "id": 1, "ts": T0})
    b = j.append({"k": "confirm", "id": 1, "level": 1.1001, "ts": T0})
    c = j.append({"k": "close", "trade_id": 3})
    j.done([a])  # the database committed the first one only
    assert j.statistics().pending == 2
    j.close()  # an orderly close writes the ack; a kill -9 would not, and that is fine too

    again = Journal(tmp_path)
    left = again.open()
    assert [e.seq for e in left] == [b, c]
    assert left[0].record == {"k": "confirm", "id": 1, "level": 1.1001, "ts": T0}
    assert again.append({"k": "status"}) == c + 1  # sequences continue


def test_without_any_ack_everything_is_replayed(tmp_path: Path) -> None:
    """kill -9 before an ack line: every record comes back (applying them is idempotent)."""
    j = Journal(tmp_path)
    j.open()
    seqs = [j.append({"k": "progress", "prices": [[1, 1.1 + i / 1e4]]}) for i in range(3)]
    # no close: the process died; the kernel kept what os.write took
    assert [e.seq for e in read_journal(tmp_path).pending] == seqs


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.open()
    j.append({"k": "close", "trade_id": 1})
    j.close()
    segment = sorted(tmp_path.glob("*.jsonl"))[-1]
    with segment.open("a") as f:
        f.write('{"s": 2, "k": "clo')  # a power cut mid-write
    assert [e.record["k"] for e in read_journal(tmp_path).pending] == ["close"]


async def test_acknowledged_segments_are_deleted_and_the_size_stays_bounded(
    tmp_path: Path,
) -> None:
    j = Journal(tmp_path, segment_bytes=2_000)
    j.open()
    for i in range(200):
        seq = j.append({"k": "progress", "prices": [[i, 1.1]]})
        j.done([seq])
        if i % 20 == 19:
            await j.sync()
    await j.sync()
    assert j.statistics().pending == 0
    _check_bounded(tmp_path)


def _check_bounded(directory: Path) -> None:
    total = sum(p.stat().st_size for p in directory.glob("*.jsonl"))
    assert total < 6_000, total  # old segments gone: only the latest few remain
    assert read_journal(directory).pending == []


def test_a_full_journal_refuses_appends_and_says_so(tmp_path: Path) -> None:
    j = Journal(tmp_path, max_bytes=300)
    j.open()
    with pytest.raises(JournalFull):
        for i in range(100):
            j.append({"k": "progress", "prices": [[i, 1.1]]})


def test_a_full_disk_is_an_error_and_the_journal_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    j = Journal(tmp_path)
    j.open()
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module.os, "write", full)
    with pytest.raises(JournalError, match="No space left"):
        j.append({"k": "close", "trade_id": 1})
    monkeypatch.setattr(journal_module.os, "write", real_write)
    seq = j.append({"k": "close", "trade_id": 2})
    j.close()
    left = read_journal(tmp_path).pending
    assert [e.record["trade_id"] for e in left] == [2] and left[0].seq == seq


def test_lines_are_plain_json(tmp_path: Path) -> None:
    """An operator can read the journal with any tool."""
    j = Journal(tmp_path)
    j.open()
    j.append({"k": "amend", "ts": T0})
    j.close()
    lines = [json.loads(x) for p in tmp_path.glob("*.jsonl") for x in p.read_text().splitlines()]
    assert lines[0]["k"] == "amend" and lines[0]["ts"] == {"$dt": T0.isoformat()}


async def test_closing_while_a_sync_waits_on_its_fsync_thread_is_clean(
    tmp_path: Path, log_records: list[Any]
) -> None:
    """The store closes the journal while the journal's task may be in its fsync thread: the
    sync that resumes after the close neither trips over the closed file nor reports a failure
    (it crashed the daemon's shutdown with an internal error once)."""
    import trio
    import trio.testing

    j = Journal(tmp_path, segment_bytes=10)  # any sync would rotate: the size is read after
    j.open()
    j.append({"k": "progress", "prices": [[1, 1.1]]})
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(j.sync)
            await trio.testing.wait_all_tasks_blocked()  # the sync waits on its thread
            assert j.close() == 1
    assert [r for r in log_records if r["extra"].get("event") == "journal.failed"] == []
    assert [e.record["k"] for e in read_journal(tmp_path).pending] == ["progress"]
