"""The tick recorder: every tick the daemon accepts, per epic and UTC day, as gzip'd CSV.

``<folder>/<EPIC>/<YYYY-MM-DD>.csv.gz`` holds ``ts_utc,bid,ask`` rows (ISO-8601 UTC with
milliseconds, prices as the shortest text that reads back to the same float): the tick loader
reads a day file as it is, and ``traild ticks export`` concatenates a period into one.

The tick path only appends the Tick to a list (``add``). A background task takes the list every
``flush_s`` (or sooner when ``batch`` ticks are waiting), turns it into columns a chunk at a
time between checkpoints of the event loop, and a worker thread passes them to the writer
process (``traild.adapters.tickwriter``), which formats, compresses and appends them on its own
interpreter: the daemon's GIL is held for the columns only. The pending ticks are bounded
(``max_pending``): past it, ticks are not recorded (counted, logged once per episode) rather
than held in memory. A write error (a full disk, a read-only folder) or a writer that dies
stops the recorder with one ``ticks.record_failed`` log record; trailing never notices. Files
older than ``retention_days`` (counted back from the newest tick's day, i.e. feed time) are
deleted by the writer.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import trio
import trio.lowlevel
from loguru import logger

from traild.adapters.tickfiles import EPOCH, TickColumns, empty_columns
from traild.adapters.tickwriter import HEADER, SUFFIX, Columns, folder_name, read_day
from traild.core.errors import DataError, InstrumentError
from traild.core.instruments import symbol_of
from traild.core.messages import Tick

_CHUNK = 2_000  # ticks turned into one frame between two checkpoints of the event loop
_TS_WIDTH = 24  # 2014-05-01T00:00:00.292Z
_MS = timedelta(milliseconds=1)


def iso_ms(ts: datetime) -> str:
    """``2014-05-01T00:00:00.292Z`` (UTC, milliseconds: the tick files' resolution)."""
    if ts.utcoffset():
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="milliseconds")[:23] + "Z"


@dataclass(frozen=True, slots=True)
class RecorderStatistics:
    recorded: int
    dropped: int
    pending: int
    failed: bool


def columns_of(batch: Sequence[Tick]) -> Columns:
    """Ticks -> the writer's columns (the only per-tick work of the daemon's process)."""
    codes: dict[str, int] = {}
    code = [codes.setdefault(t.epic, len(codes)) for t in batch]
    ms = [(t.ts - EPOCH) // _MS for t in batch]
    return Columns(list(codes), code, ms, [t.bid for t in batch], [t.ask for t in batch])


class WriterProcess:
    """The writer process (``traild.adapters.tickwriter``), driven from a worker thread:
    started at the first batch; one answer per frame."""

    def __init__(self, folder: Path, retention_days: int) -> None:
        self.folder = folder
        self.retention_days = retention_days
        self.proc: subprocess.Popen[bytes] | None = None
        self.proc_code: int | None = None  # how the last writer ended
        self.prune_error: str | None = None

    def write(self, frames: Sequence[bytes]) -> int:
        """Send ``frames`` (``Columns.frame``); rows written. OSError when the writer failed
        or died (it is then stopped). Blocking I/O only: the GIL is free meanwhile."""
        proc = self.proc or self._start()
        assert proc.stdin is not None and proc.stdout is not None
        written = 0
        try:  # one write for all frames (answers are a few bytes each: no pipe fills up)
            proc.stdin.write(b"".join(frames))
            proc.stdin.flush()
        except OSError:
            frames = frames[:1]  # read the one answer that explains it
        for _ in frames:
            try:
                answer = proc.stdout.readline().decode("utf-8", "replace").strip()
            except OSError:
                answer = ""
            word, _, rest = answer.partition(" ")
            if word != "ok":
                self.close()
                raise OSError(rest or f"the tick writer exited (code {self.proc_code})")
            count, _, warning = rest.partition(" prune_failed ")
            self.prune_error = warning or self.prune_error
            written += int(count)
        return written

    def close(self, timeout: float = 10.0) -> None:
        """End the writer: end of input, then wait (bounded), else kill."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            self.proc_code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.proc_code = proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()

    def _start(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "traild.adapters.tickwriter", str(self.folder),
                   str(self.retention_days)]  # fmt: skip
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        return self.proc


class TickRecorder:
    """Records accepted ticks off the tick path (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        retention_days: int,
        *,
        flush_s: float = 1.0,
        batch: int = 20_000,
        max_pending: int = 1_000_000,
    ) -> None:
        self.folder = folder
        self.writer = WriterProcess(folder, retention_days)
        self.flush_s = flush_s
        self.batch = batch
        self.max_pending = max_pending
        self._buffer: list[Tick] = []
        self._in_flight = 0
        self._wake = trio.Event()
        self.recorded = 0
        self.dropped = 0
        self._dropping = False
        self.failed = False

    def add(self, tick: Tick) -> None:
        """The tick path's only call: append (O(1), never blocks, never raises)."""
        if self.failed:
            return
        buffer = self._buffer
        if len(buffer) + self._in_flight >= self.max_pending:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                logger.bind(event="ticks.record_dropped", pending=self.max_pending).warning(
                    "tick recorder behind: ticks not recorded until it catches up"
                )
            return
        buffer.append(tick)
        if len(buffer) >= self.batch:
            self._wake.set()

    def statistics(self) -> RecorderStatistics:
        pending = len(self._buffer) + self._in_flight
        return RecorderStatistics(self.recorded, self.dropped, pending, self.failed)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush periodically until cancelled; then write what is left (shielded, bounded by
        the size of the buffer)."""
        logger.bind(event="ticks.recording", folder=str(self.folder)).info(
            "recording accepted ticks"
        )
        task_status.started()
        try:
            while not self.failed:
                with trio.move_on_after(self.flush_s):
                    await self._wake.wait()
                self._wake = trio.Event()
                await self.flush()
        finally:
            with trio.CancelScope(shield=True):
                await self.flush()
                await trio.to_thread.run_sync(self.writer.close)

    async def flush(self) -> None:
        """Turn the buffered ticks into frames, a chunk between checkpoints, and have a
        worker thread send them to the writer process and wait for them to be on disk.

        The frames are built here, in the event loop's thread: a worker thread doing Python
        work gets the GIL only in scraps while ticks flood in (measured: 0.6 s for the
        columns of 8,500 ticks, a hundred times its time on an idle loop), and a chunk of
        ``_CHUNK`` ticks holds the loop for about a millisecond."""
        batch, self._buffer = self._buffer, []
        if not batch or self.failed:
            return
        self._in_flight = len(batch)
        try:
            frames = []
            for i in range(0, len(batch), _CHUNK):
                frames.append(columns_of(batch[i : i + _CHUNK]).frame())
                await trio.lowlevel.checkpoint()
            self.recorded += await trio.to_thread.run_sync(self.writer.write, frames)
        except Exception as exc:  # a full disk, or anything else: recording stops, not trailing
            self.failed = True
            self._buffer = []
            logger.bind(
                event="ticks.record_failed",
                folder=str(self.folder),
                error=f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}",
                recorded=self.recorded,
                lost=len(batch),
            ).error("tick recording stopped (trailing goes on)")
        finally:
            self._in_flight = 0
        if self.writer.prune_error is not None:
            logger.bind(event="ticks.prune_failed", error=self.writer.prune_error).warning(
                "old tick recording not deleted"
            )
            self.writer.prune_error = None
        if self._dropping and not self.failed:
            self._dropping = False
            logger.bind(event="ticks.record_resumed", dropped=self.dropped).warning(
                "tick recorder caught up"
            )


# -- reading ------------------------------------------------------------------------------------
class Recordings:
    """The recorder's folder, read: epics, days, ticks of a period, export."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def epics(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if any(p.glob(f"*{SUFFIX}")))

    def resolve(self, epic: str) -> str:
        """The recorded epic ``epic`` names (exactly, or the one epic of that symbol)."""
        known = self.epics()
        if epic in known:
            return epic
        with contextlib.suppress(InstrumentError):
            same = [e for e in known if symbol_of(e) == symbol_of(epic)]
            if len(same) == 1:
                return same[0]
        have = ", ".join(known) or "none"
        raise DataError(f"no recorded ticks for {epic} in {self.folder} (recorded: {have})")

    def days(self, epic: str) -> list[str]:
        folder = self.folder / folder_name(epic)
        return sorted(p.name[:10] for p in folder.glob(f"*{SUFFIX}"))

    def rows(self, epic: str, since: datetime | None, until: datetime | None) -> Iterator[bytes]:
        """Data rows (no header) with ``since <= ts < until``, oldest first."""
        lo = iso_ms(since).encode() if since is not None else b""
        hi = iso_ms(until).encode() if until is not None else b"~"
        for day in self.days(epic):
            if day.encode() < lo[:10] or day.encode() > hi[:10]:
                continue
            body = read_day(self.folder / folder_name(epic) / f"{day}{SUFFIX}")
            for line in body.splitlines():
                if line[:1].isdigit() and lo <= line[:_TS_WIDTH] < hi:
                    yield line

    def columns(
        self, epic: str, since: datetime | None = None, until: datetime | None = None
    ) -> TickColumns:
        """The recorded ticks of a period as columns (exactly the floats recorded)."""
        rows = list(self.rows(epic, since, until))
        if not rows:
            return empty_columns()
        flat = b",".join(rows).replace(b"Z,", b",").split(b",")
        ts = np.array(flat[0::3]).astype("datetime64[ms]")
        bid = np.array(flat[1::3], dtype=np.float64)
        ask = np.array(flat[2::3], dtype=np.float64)
        return TickColumns(ts, bid, ask)

    def export(
        self, epic: str, since: datetime | None, until: datetime | None, target: Path
    ) -> int:
        """Write the period as a normal tick file (gzip'd when ``target`` ends in .gz)."""
        epic = self.resolve(epic)
        count = 0
        opener = gzip.open if target.name.endswith(".gz") else open
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with opener(tmp, "wb") as out:
                out.write(HEADER)
                for line in self.rows(epic, since, until):
                    out.write(line + b"\n")
                    count += 1
            if count:
                tmp.replace(target)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return count
