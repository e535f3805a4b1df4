"""The tick recorder: every tick the daemon accepts, per epic and UTC day, as gzip'd CSV.

``<folder>/<EPIC>/<YYYY-MM-DD>.csv.gz`` holds ``ts_utc,bid,ask`` rows (ISO-8601 UTC with
milliseconds, prices as the shortest text that reads back to the same float): the tick loader
reads a day file as it is, and ``traild ticks export`` concatenates a period into one.

The tick path only appends the Tick to a list (``add``). A background task hands the list to a
worker thread every ``flush_s`` (or sooner when ``batch`` ticks are waiting); the thread groups,
formats and compresses it and appends one gzip member per day file. The pending ticks are
bounded (``max_pending``): past it, ticks are not recorded (counted, logged once per episode)
rather than held in memory. A write error (a full disk, a read-only folder) stops the recorder
with one ``ticks.record_failed`` log record; trailing never notices. Files older than
``retention_days`` (counted back from the newest tick's day, i.e. feed time) are deleted.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import trio
from loguru import logger

from traild.adapters.tickfiles import EPOCH, TickColumns, empty_columns
from traild.core.errors import DataError, InstrumentError
from traild.core.instruments import symbol_of
from traild.core.messages import Tick

HEADER = b"ts_utc,bid,ask\n"
SUFFIX = ".csv.gz"
_TS_WIDTH = 24  # 2014-05-01T00:00:00.292Z
_MS = timedelta(milliseconds=1)


def iso_ms(ts: datetime) -> str:
    """``2014-05-01T00:00:00.292Z`` (UTC, milliseconds: the tick files' resolution)."""
    if ts.utcoffset():
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="milliseconds")[:23] + "Z"


def _folder_name(epic: str) -> str:
    """An epic as a directory name (epics are dotted names; never a path)."""
    name = epic.replace("/", "_").replace("\\", "_").strip()
    return "_" + name if name.startswith(".") or not name else name


@dataclass(frozen=True, slots=True)
class RecorderStatistics:
    recorded: int
    dropped: int
    pending: int
    failed: bool


class DayFiles:
    """The writing side, run in a worker thread: batches of ticks -> day files (sync I/O)."""

    def __init__(self, folder: Path, retention_days: int, compresslevel: int = 1) -> None:
        self.folder = folder
        self.retention_days = retention_days
        self.compresslevel = compresslevel
        self._floor: dict[str, str] = {}  # epic -> last ts (no Z) on disk at our start
        self._newest: date | None = None

    def write(self, batch: list[Tick]) -> int:
        """Append ``batch`` (in arrival order) to its day files; the rows written. OSError
        propagates (the caller stops recording)."""
        # Time stamps in one numpy call: this thread holds the GIL while it formats, and the
        # tick path waits for the GIL meanwhile, so the Python work per tick is kept small.
        ms = np.fromiter(((t.ts - EPOCH) // _MS for t in batch), np.int64, len(batch))
        stamps: list[str] = np.datetime_as_string(ms.astype("datetime64[ms]"), "ms").tolist()
        groups: dict[tuple[str, str], list[str]] = {}
        floors = self._floor
        for t, ts in zip(batch, stamps, strict=True):
            floor = floors.get(t.epic)
            if floor is None:
                floor = floors[t.epic] = self._last_on_disk(t.epic, ts[:10])
            if ts <= floor:  # a restarted replay resends what the file already holds
                continue
            groups.setdefault((t.epic, ts[:10]), []).append(f"{ts}Z,{t.bid!r},{t.ask!r}\n")
        written = 0
        for (epic, day), rows in groups.items():
            self._append(self.path(epic, day), rows)
            written += len(rows)
        if groups:
            self._prune(max(date.fromisoformat(day) for _, day in groups))
        return written

    def path(self, epic: str, day: str) -> Path:
        return self.folder / _folder_name(epic) / f"{day}{SUFFIX}"

    def _append(self, path: Path, rows: list[str]) -> None:
        """One gzip member per call; a failed write is cut back so the file stays readable."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists() or path.stat().st_size == 0
        data = (HEADER if fresh else b"") + "".join(rows).encode("ascii")
        member = gzip.compress(data, self.compresslevel, mtime=0)
        with path.open("ab") as fh:
            start = fh.tell()
            try:
                fh.write(member)
                fh.flush()
            except OSError:
                with contextlib.suppress(OSError):
                    fh.truncate(start)
                raise

    def _last_on_disk(self, epic: str, day: str) -> str:
        path = self.path(epic, day)
        if not path.exists():
            return ""
        body = read_day(path)
        cut = body.rstrip(b"\n").rfind(b"\n")
        last = body[cut + 1 : cut + _TS_WIDTH].decode("ascii", "replace")  # without the Z
        return last if last[:4].isdigit() else ""

    def _prune(self, newest: date) -> None:
        """Delete day files older than the retention (feed time: the newest tick's day)."""
        if self._newest is not None and newest <= self._newest:
            return
        self._newest = newest
        oldest = (newest - timedelta(days=self.retention_days - 1)).isoformat()
        for path in self.folder.glob(f"*/*{SUFFIX}"):
            if path.name[:10] < oldest:
                try:
                    path.unlink()
                except OSError as exc:
                    logger.bind(event="ticks.prune_failed", path=str(path), error=str(exc)).warning(
                        "old tick recording not deleted"
                    )


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
        self.files = DayFiles(folder, retention_days)
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
        logger.bind(event="ticks.recording", folder=str(self.files.folder)).info(
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

    async def flush(self) -> None:
        """Hand the buffered ticks to a worker thread and wait for them to be on disk."""
        batch, self._buffer = self._buffer, []
        if not batch or self.failed:
            return
        self._in_flight = len(batch)
        try:
            self.recorded += await trio.to_thread.run_sync(self.files.write, batch)
        except Exception as exc:  # a full disk, or anything else: recording stops, not trailing
            self.failed = True
            self._buffer = []
            logger.bind(
                event="ticks.record_failed",
                folder=str(self.files.folder),
                error=f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}",
                recorded=self.recorded,
                lost=len(batch),
            ).error("tick recording stopped (trailing goes on)")
        finally:
            self._in_flight = 0
        if self._dropping and not self.failed:
            self._dropping = False
            logger.bind(event="ticks.record_resumed", dropped=self.dropped).warning(
                "tick recorder caught up"
            )


# -- reading ------------------------------------------------------------------------------------
def read_day(path: Path) -> bytes:
    """A day file's text. A member cut short (a crash mid-write) ends the file: what the
    complete members before it hold is read."""
    raw = path.read_bytes()
    out: list[bytes] = []
    while raw:
        d = zlib.decompressobj(wbits=31)
        try:
            text = d.decompress(raw)
        except zlib.error:
            break
        if not d.eof:
            break
        out.append(text)
        raw = d.unused_data
    body = b"".join(out)
    return body[: body.rfind(b"\n") + 1]


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
        folder = self.folder / _folder_name(epic)
        return sorted(p.name[:10] for p in folder.glob(f"*{SUFFIX}"))

    def rows(self, epic: str, since: datetime | None, until: datetime | None) -> Iterator[bytes]:
        """Data rows (no header) with ``since <= ts < until``, oldest first."""
        lo = iso_ms(since).encode() if since is not None else b""
        hi = iso_ms(until).encode() if until is not None else b"~"
        for day in self.days(epic):
            if day.encode() < lo[:10] or day.encode() > hi[:10]:
                continue
            body = read_day(self.folder / _folder_name(epic) / f"{day}{SUFFIX}")
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
