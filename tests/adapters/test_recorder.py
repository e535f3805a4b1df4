"""The tick recorder: its files replay to exactly the ticks it was given, a write error only
stops recording, retention deletes old days, and export writes a normal tick file."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import trio
import trio.lowlevel
from loguru import logger

from traild.adapters.recorder import Recordings, TickRecorder, columns_of, iso_ms
from traild.adapters.tickfiles import load_ticks
from traild.adapters.tickwriter import DayFiles
from traild.core.errors import DataError
from traild.core.messages import Tick

EPIC = "CS.D.EURUSD.MINI.IP"
T0 = datetime(2014, 5, 1, 23, 59, 58, 292000, tzinfo=UTC)


def _ticks(n: int, epic: str = EPIC, start: datetime = T0, step_ms: int = 250) -> list[Tick]:
    rng = np.random.default_rng(3)
    mids = 1.38 + np.cumsum(rng.normal(0, 0.00003, n))
    return [
        Tick(epic, start + timedelta(milliseconds=i * step_ms), round(m, 5), round(m + 0.00011, 5))
        for i, m in enumerate(mids.tolist())
    ]


async def _record(folder: Path, ticks: list[Tick], **kw: object) -> TickRecorder:
    recorder = TickRecorder(folder, 30, **kw)  # type: ignore[arg-type]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(recorder.run)
            for i, t in enumerate(ticks):
                recorder.add(t)
                if i % 97 == 0:
                    await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
    return recorder


async def test_recorded_day_files_replay_to_exactly_the_ticks_given(tmp_path: Path) -> None:
    ticks = _ticks(3000)  # crosses midnight: two day files
    recorder = await _record(tmp_path, ticks, batch=500, flush_s=0.01)
    assert recorder.recorded == len(ticks) and recorder.dropped == 0
    assert recorder.writer.proc is None and recorder.writer.proc_code == 0  # ended with us
    files = sorted((tmp_path / EPIC).iterdir())
    assert [f.name for f in files] == ["2014-05-01.csv.gz", "2014-05-02.csv.gz"]
    ms, bid, ask = [], [], []
    for f in files:  # the project's own tick loader reads each day file as it is
        cols = load_ticks(f)
        ms += cols.ts_ms.tolist()
        bid += cols.bid.tolist()
        ask += cols.ask.tolist()
    want_ms = [int((t.ts - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))
               for t in ticks]  # fmt: skip
    assert ms == want_ms
    assert bid == [t.bid for t in ticks] and ask == [t.ask for t in ticks]


async def test_export_writes_a_normal_tick_file_of_the_period(tmp_path: Path) -> None:
    ticks = _ticks(2000)
    await _record(tmp_path / "rec", ticks, batch=300, flush_s=0.01)
    since, until = ticks[100].ts, ticks[1500].ts
    out = tmp_path / "out.csv.gz"
    n = Recordings(tmp_path / "rec").export("EURUSD", since, until, out)  # by symbol too
    assert n == 1400
    cols = load_ticks(out)
    assert cols.bid.tolist() == [t.bid for t in ticks[100:1500]]
    again = Recordings(tmp_path / "rec").columns(EPIC, since, until)
    assert again.ts_ms.tolist() == cols.ts_ms.tolist()
    with pytest.raises(DataError, match=r"no recorded ticks for CS\.D\.GBPUSD"):
        Recordings(tmp_path / "rec").resolve("CS.D.GBPUSD.MINI.IP")


async def test_a_write_error_stops_recording_with_one_log_record(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the folder should be")
    records: list[dict[str, object]] = []
    sink = logger.add(lambda m: records.append(m.record["extra"]), level="DEBUG")
    try:
        recorder = await _record(blocker, _ticks(1000), batch=100, flush_s=0.01)
    finally:
        logger.remove(sink)
    assert recorder.failed and recorder.recorded == 0
    failed = [r for r in records if r.get("event") == "ticks.record_failed"]
    assert len(failed) == 1 and "Error" in str(failed[0]["error"])
    recorder.add(_ticks(1)[0])  # ignored, never raises
    assert recorder.statistics().pending == 0


async def test_a_full_buffer_drops_ticks_instead_of_growing(tmp_path: Path) -> None:
    recorder = TickRecorder(tmp_path, 30, max_pending=10)
    for t in _ticks(25):
        recorder.add(t)
    assert recorder.statistics().pending == 10 and recorder.dropped == 15
    await recorder.flush()
    await trio.to_thread.run_sync(recorder.writer.close)
    assert recorder.recorded == 10 and recorder.writer.proc_code == 0


def test_retention_deletes_days_older_than_record_days(tmp_path: Path) -> None:
    files = DayFiles(tmp_path, retention_days=2)
    for day in range(1, 6):
        files.write(columns_of(_ticks(3, start=datetime(2014, 5, day, 12, tzinfo=UTC))))
    assert sorted(p.name for p in (tmp_path / EPIC).iterdir()) == [
        "2014-05-04.csv.gz",
        "2014-05-05.csv.gz",
    ]


def test_a_restart_appends_without_repeating_ticks_already_on_disk(tmp_path: Path) -> None:
    ticks = _ticks(40, start=datetime(2014, 5, 1, 12, tzinfo=UTC))
    DayFiles(tmp_path, 30).write(columns_of(ticks[:30]))
    DayFiles(tmp_path, 30).write(columns_of(ticks[10:]))  # a restarted replay resends 10..29
    cols = load_ticks(tmp_path / EPIC / "2014-05-01.csv.gz")
    assert cols.bid.tolist() == [t.bid for t in ticks]


def test_a_member_cut_short_by_a_crash_reads_up_to_the_last_complete_row(tmp_path: Path) -> None:
    ticks = _ticks(50, start=datetime(2014, 5, 1, 12, tzinfo=UTC))
    DayFiles(tmp_path, 30).write(columns_of(ticks[:20]))
    path = tmp_path / EPIC / "2014-05-01.csv.gz"
    member = gzip.compress(b"".join(f"{iso_ms(t.ts)},{t.bid},{t.ask}\n".encode()
                                    for t in ticks[20:]))  # fmt: skip
    with path.open("ab") as fh:
        fh.write(member[: len(member) // 2])
    cols = Recordings(tmp_path).columns(EPIC)
    assert cols.bid.tolist() == [t.bid for t in ticks[:20]]


async def test_a_writer_process_that_dies_stops_recording_not_the_caller(tmp_path: Path) -> None:
    records: list[dict[str, object]] = []
    sink = logger.add(lambda m: records.append(m.record["extra"]), level="DEBUG")
    recorder = TickRecorder(tmp_path, 30)
    ticks = _ticks(200)
    try:
        for t in ticks[:100]:
            recorder.add(t)
        await recorder.flush()
        assert recorder.writer.proc is not None
        recorder.writer.proc.kill()
        await trio.to_thread.run_sync(recorder.writer.proc.wait)
        for t in ticks[100:]:
            recorder.add(t)
        await recorder.flush()
    finally:
        logger.remove(sink)
        await trio.to_thread.run_sync(recorder.writer.close)
    assert recorder.failed and recorder.recorded == 100
    failed = [r for r in records if r.get("event") == "ticks.record_failed"]
    assert len(failed) == 1 and failed[0]["lost"] == 100
    assert "exited" in str(failed[0]["error"])
