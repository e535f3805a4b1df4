"""The tick recorder's writer process: batches of ticks on stdin -> gzip'd CSV day files.

``TickRecorder`` starts it as ``python -m traild.adapters.tickwriter FOLDER RETENTION_DAYS``, so
formatting and compression run on their own interpreter (and GIL), never on the daemon's.
Standard library only: it starts in a few milliseconds and imports nothing of the daemon.

One frame per batch: ``TRW1``, ``<II`` (ticks n, length of the epic table), the epic table
(UTF-8, newline-separated), then the columns: epic codes uint16[n], epoch ms int64[n], bid and
ask float64[n] (native byte order: parent and child run on one machine). Each frame is
answered on stdout with ``ok N`` (rows written; ``ok N prune_failed WHAT`` when an old file
could not be deleted) or ``error MESSAGE`` (then it exits 1). End of
input (the daemon closed the pipe, or died) ends it with exit 0; stop signals are ignored (they
reach the whole process group or cgroup, and the daemon's last batch must still be written).

``<folder>/<EPIC>/<YYYY-MM-DD>.csv.gz``: header ``ts_utc,bid,ask``, ISO-8601 UTC times with
milliseconds, prices as the shortest text that reads back to the same float; one gzip member
per batch and day file (a failed write is cut back, so the file stays readable). Files older
than the retention (counted back from the newest tick's day, i.e. feed time) are deleted.
"""

from __future__ import annotations

import contextlib
import gzip
import signal
import struct
import sys
import time
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

MAGIC = b"TRW1"
HEAD = struct.Struct("<II")
HEADER = b"ts_utc,bid,ask\n"
SUFFIX = ".csv.gz"
_TS_WIDTH = 23  # 2014-05-01T00:00:00.292 (without the Z)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Columns:
    """A batch of ticks, as columns (what a frame carries)."""

    epics: Sequence[str]
    codes: Sequence[int]  # index into epics
    ms: Sequence[int]
    bid: Sequence[float]
    ask: Sequence[float]

    def frame(self) -> bytes:
        table = "\n".join(self.epics).encode("utf-8")
        parts = (array("H", self.codes), array("q", self.ms), array("d", self.bid),
                 array("d", self.ask))  # fmt: skip
        return (
            MAGIC
            + HEAD.pack(len(self.ms), len(table))
            + table
            + b"".join(p.tobytes() for p in parts)
        )


def folder_name(epic: str) -> str:
    """An epic as a directory name (epics are dotted names; never a path)."""
    name = epic.replace("/", "_").replace("\\", "_").strip()
    return "_" + name if name.startswith(".") or not name else name


class DayFiles:
    """Batches -> day files (sync I/O)."""

    def __init__(self, folder: Path, retention_days: int, compresslevel: int = 1) -> None:
        self.folder = folder
        self.retention_days = retention_days
        self.compresslevel = compresslevel
        self._floor: dict[str, int] = {}  # epic -> last ms on disk when we started
        self._newest: date | None = None
        self.prune_error: str | None = None  # the last old file that could not be deleted

    def write(self, batch: Columns) -> int:
        """Append ``batch`` (in arrival order) to its day files; the rows written. OSError
        propagates."""
        groups: dict[tuple[str, str], list[str]] = {}
        floors = [self._floor_of(e, batch, i) for i, e in enumerate(batch.epics)]
        last_sec, prefix = -1, ""
        strftime, gmtime = time.strftime, time.gmtime
        for code, ms, bid, ask in zip(batch.codes, batch.ms, batch.bid, batch.ask, strict=True):
            if ms <= floors[code]:  # a restarted replay resends what the file already holds
                continue
            sec, milli = divmod(ms, 1000)
            if sec != last_sec:
                last_sec, prefix = sec, strftime("%Y-%m-%dT%H:%M:%S", gmtime(sec))
            key = (batch.epics[code], prefix[:10])
            rows = groups.get(key)
            if rows is None:
                rows = groups[key] = []
            rows.append(f"{prefix}.{milli:03d}Z,{bid!r},{ask!r}\n")
        for (epic, day), rows in groups.items():
            self._append(self.path(epic, day), rows)
        if groups:
            self._prune(max(date.fromisoformat(day) for _, day in groups))
        return sum(len(rows) for rows in groups.values())

    def path(self, epic: str, day: str) -> Path:
        return self.folder / folder_name(epic) / f"{day}{SUFFIX}"

    def _floor_of(self, epic: str, batch: Columns, code: int) -> int:
        floor = self._floor.get(epic)
        if floor is None:
            first = next(m for c, m in zip(batch.codes, batch.ms, strict=True) if c == code)
            day = time.strftime("%Y-%m-%d", time.gmtime(first // 1000))
            floor = self._floor[epic] = self._last_on_disk(epic, day)
        return floor

    def _append(self, path: Path, rows: list[str]) -> None:
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

    def _last_on_disk(self, epic: str, day: str) -> int:
        """The last recorded time of ``epic`` on ``day`` (epoch ms; -1: none)."""
        path = self.path(epic, day)
        if not path.exists():
            return -1
        body = read_day(path)
        cut = body.rstrip(b"\n").rfind(b"\n")
        text = body[cut + 1 : cut + 1 + _TS_WIDTH].decode("ascii", "replace")
        try:
            stamp = datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            return -1
        return (stamp - _EPOCH) // timedelta(milliseconds=1)

    def _prune(self, newest: date) -> None:
        """Delete day files older than the retention (feed time: the newest tick's day)."""
        if self._newest is not None and newest <= self._newest:
            return
        self._newest = newest
        oldest = (newest - timedelta(days=self.retention_days - 1)).isoformat()
        for path in self.folder.glob(f"*/*{SUFFIX}"):
            if path.name[:10] < oldest:
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:  # reported with the batch; recording goes on
                    self.prune_error = f"{path}: {exc.strerror or exc}"


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


def read_frame(stream: object) -> Columns | None:
    """The next frame of ``stream`` (a binary reader); None at its end."""
    read = stream.read  # type: ignore[attr-defined]
    head = read(len(MAGIC) + HEAD.size)
    if not head:
        return None
    if len(head) < len(MAGIC) + HEAD.size or head[: len(MAGIC)] != MAGIC:
        raise ValueError("not a tick writer frame")
    n, table_len = HEAD.unpack(head[len(MAGIC) :])
    table = read(table_len).decode("utf-8")
    columns = []
    for code, size in (("H", 2), ("q", 8), ("d", 8), ("d", 8)):
        data = read(n * size)
        if len(data) != n * size:
            raise ValueError("frame cut short")
        columns.append(array(code, data))
    return Columns(table.split("\n") if table else [], *columns)


def main(argv: Sequence[str]) -> int:
    # The daemon's stop signals reach its whole process group / cgroup (Ctrl-C, systemd's
    # KillMode=control-group): the writer ends at the end of its input instead, after the
    # daemon's last batch (and at once if the daemon dies: its end of the pipe closes).
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    files = DayFiles(Path(argv[0]), int(argv[1]))
    stdin = sys.stdin.buffer
    while True:
        try:
            batch = read_frame(stdin)
            if batch is None:
                return 0
            written = files.write(batch)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            _answer(f"error {type(exc).__name__}: {reason}")
            return 1
        warning, files.prune_error = files.prune_error, None
        _answer(f"ok {written}" + (f" prune_failed {warning}" if warning else ""))


def _answer(line: str) -> None:
    sys.stdout.write(line.replace("\n", " ") + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
