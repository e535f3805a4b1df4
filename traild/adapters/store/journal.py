"""The local write-ahead journal: what the database has not taken yet survives any stop.

Every record that matters (amendment requested / sent / confirmed / refused, trade adopted and
closed, best prices, method changes, recalculations) is appended here *before* the store
queues its database write, and so before the broker is asked: one ``os.write`` of one JSON
line to a file opened ``O_APPEND``, which the kernel keeps through ``kill -9``; an ``fsync``
in a worker thread makes batches durable through a power cut (``sync_every_s``). When the
database has committed a record's write, the record is *done*; an ``{"ack": n}`` line says
that every record up to ``n`` is in the database. On start, the records after the last ack
are applied to the database again (idempotently: inserts by their key, updates are
absolute), before the daemon adopts and trails.

Files: ``<dir>/<segment>.jsonl``, a new segment every ``segment_bytes``; a segment whose
records are all acknowledged is deleted. The journal is bounded by ``max_bytes``: past it,
appends are refused (``JournalFull``) and the store falls back to its memory queue, logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import trio
from loguru import logger

from traild.core.errors import StoreError

SEGMENT_BYTES = 4 << 20
MAX_BYTES = 256 << 20
SYNC_EVERY_S = 0.1


class JournalError(StoreError):
    """The journal cannot be written (a full disk, a permission): records go to the memory
    queue only, as before the journal existed; logged."""


class JournalFull(JournalError):
    """The journal reached its bound (the database has been away for a long time)."""


@dataclass(frozen=True, slots=True)
class JournalStatistics:
    pending: int  # records the database has not committed yet
    bytes: int  # size of the journal's files
    oldest_s: float  # age of the oldest pending record (wall seconds; 0 when none)
    segments: int


def journal_dir(state_dir: Path, display_url: str) -> Path:
    """The journal of one database (by its URL, password masked): a changed URL never applies
    one database's records to another."""
    key = hashlib.sha256(display_url.encode()).hexdigest()[:12]
    return state_dir / "journal" / key


def summary(directory: Path) -> dict[str, Any]:
    """What waits in a journal, read from its files (for ``traild report``; the daemon may be
    running): pending records, the age of the oldest in seconds, bytes on disk."""
    pending = read_journal(directory).pending
    oldest = min((e.wall for e in pending), default=None)
    return {
        "pending": len(pending),
        "oldest_s": None if oldest is None else round(max(0.0, time.time() - oldest), 1),
        "bytes": sum(p.stat().st_size for p in _segments(directory)),
    }


def _encode_default(value: Any) -> Any:
    """JSON-safe records (``json.dumps``'s hook; tuples are lists already): datetimes as
    ``{"$dt": iso}``."""
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$dt"}:
            return datetime.fromisoformat(value["$dt"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    wall: float
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Contents:
    """What a journal directory holds."""

    pending: list[Entry]  # records after the last ack, oldest first
    ack: int  # the last acknowledged sequence
    top: int  # the highest sequence seen
    tops: dict[Path, int]  # the highest sequence of each segment


def read_journal(directory: Path) -> Contents:
    """Read every segment. A torn line (a power cut mid-write) is skipped with a warning."""
    entries: list[Entry] = []
    ack = top = 0
    tops: dict[Path, int] = {}
    for path in _segments(directory):
        tops[path] = 0
        for line_no, line in _lines(path):
            try:
                item = json.loads(line)
            except ValueError:
                logger.bind(event="journal.torn_line", file=path.name, line=line_no).warning(
                    "unreadable journal line skipped (an interrupted write)"
                )
                continue
            if "ack" in item:
                ack = max(ack, int(item["ack"]))
                continue
            seq = int(item.pop("s"))
            top = max(top, seq)
            tops[path] = max(tops[path], seq)
            entries.append(Entry(seq, float(item.pop("w", 0.0)), decode(item)))
    return Contents([e for e in entries if e.seq > ack], ack, top, tops)


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line


class Journal:
    """An append-only journal in ``directory`` (see the module). ``open`` it, ``append``
    records, tell it ``done(seq)`` as the database commits them; ``run`` syncs and acks."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        max_bytes: int = MAX_BYTES,
        sync_every_s: float = SYNC_EVERY_S,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.sync_every_s = sync_every_s
        self._fd: int | None = None
        self._segment: Path | None = None
        self._seq = 0
        self._acked = 0
        self._ack_written = 0
        self._pending: dict[int, float] = {}  # seq -> wall time appended (insertion-ordered)
        self._bytes = 0
        self._dirty = False
        self._failed: str | None = None
        self._tops: dict[Path, int] = {}  # closed segments: their highest sequence

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> list[Entry]:
        """Create the directory, read what a previous run left; return the records the
        database may not have (after the last ack), oldest first. Appends start after them."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            contents = read_journal(self.directory)
            left, self._acked, self._seq = contents.pending, contents.ack, contents.top
            self._tops = dict(contents.tops)
            self._ack_written = self._acked
            self._bytes = sum(p.stat().st_size for p in _segments(self.directory))
            self._new_segment()
        except OSError as exc:
            raise JournalError(f"cannot open the journal in {self.directory}: {exc}") from exc
        for entry in left:
            self._pending[entry.seq] = entry.wall
        return left

    def close(self) -> int:
        """Write the last ack, sync, close; returns how many records wait for the database."""
        if self._fd is None:
            return len(self._pending)
        try:
            self._write_ack()
            os.fsync(self._fd)
        except OSError as exc:
            self._fail(exc)
        os.close(self._fd)
        self._fd = None
        return len(self._pending)

    # -- records -----------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> int:
        """Journal ``record`` (one write: it survives kill -9 once this returns); its seq."""
        if self._fd is None:
            raise JournalError("the journal is closed")
        if self._bytes >= self.max_bytes:
            raise JournalFull(
                f"the journal holds {self._bytes >> 20} MB (limit {self.max_bytes >> 20} MB)"
            )
        seq = self._seq + 1
        wall = time.time()
        line = json.dumps(
            {"s": seq, "w": round(wall, 3), **record},
            separators=(",", ":"),
            default=_encode_default,
        )
        self._write(line)
        self._seq = seq
        self._pending[seq] = wall
        return seq

    def done(self, seqs: list[int]) -> None:
        """The database committed these records."""
        for seq in seqs:
            self._pending.pop(seq, None)
        self._acked = (next(iter(self._pending)) - 1) if self._pending else self._seq

    def settle(self, seqs: list[int]) -> None:
        """Records applied again at start-up: done, and acknowledged at once."""
        self.done(seqs)
        self._write_ack()

    def statistics(self) -> JournalStatistics:
        oldest = next(iter(self._pending.values()), None)
        return JournalStatistics(
            pending=len(self._pending),
            bytes=self._bytes,
            oldest_s=0.0 if oldest is None else max(0.0, time.time() - oldest),
            segments=len(self._tops) + 1,
        )

    # -- background --------------------------------------------------------------------------
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """fsync in batches, write acks, rotate and prune segments, until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(self.sync_every_s)
            await self.sync()

    async def sync(self) -> None:
        """One round: ack what is done, fsync what was written, rotate and prune."""
        fd = self._fd
        if fd is None:
            return
        try:
            self._write_ack()
            if self._dirty:
                self._dirty = False
                await trio.to_thread.run_sync(os.fsync, fd)
                if self._fd != fd:  # closed meanwhile: ``close`` synced the file itself
                    return
            if self._bytes_in_segment() >= self.segment_bytes:
                self._new_segment()
            self._prune()
        except OSError as exc:
            if self._fd == fd:  # not the descriptor ``close`` took away under the thread
                self._fail(exc)

    # -- files -------------------------------------------------------------------------------
    def _write(self, line: str) -> None:
        assert self._fd is not None
        data = (line + "\n").encode()
        try:
            written = os.write(self._fd, data)
        except OSError as exc:
            self._fail(exc)
            raise JournalError(f"cannot write the journal: {exc}") from exc
        if written != len(data):  # a full disk mid-line: the line is torn, the record not kept
            err = OSError(28, "short write (disk full?)")
            self._fail(err)
            raise JournalError(f"cannot write the journal: {err}")
        self._bytes += written
        self._dirty = True
        if self._failed is not None:
            logger.bind(event="journal.recovered").info("the journal is writable again")
            self._failed = None

    def _write_ack(self) -> None:
        if self._acked > self._ack_written and self._fd is not None:
            self._write(json.dumps({"ack": self._acked}))
            self._ack_written = self._acked

    def _bytes_in_segment(self) -> int:
        assert self._fd is not None
        return os.fstat(self._fd).st_size

    def _new_segment(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            if self._segment is not None:
                self._tops[self._segment] = self._seq
        number = 1 + max((int(p.stem) for p in _segments(self.directory)), default=0)
        self._segment = self.directory / f"{number:08d}.jsonl"
        self._fd = os.open(self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self._ack_written:  # a new segment says where the acknowledged records end
            os.write(self._fd, (json.dumps({"ack": self._ack_written}) + "\n").encode())

    def _prune(self) -> None:
        """Delete closed segments whose records are all acknowledged (oldest first)."""
        for path in sorted(self._tops):
            if self._tops[path] > self._ack_written:
                return  # segments are in order: later ones hold later records
            del self._tops[path]
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            self._bytes -= size

    def _fail(self, exc: OSError) -> None:
        error = f"{exc.__class__.__name__}: {exc}"
        if error != self._failed:
            logger.bind(event="journal.failed", error=error, directory=str(self.directory)).error(
                "the journal cannot be written ({}); records wait in memory only", error
            )
        self._failed = error
