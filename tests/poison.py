"""Poisoned copies of real tick files: bad lines inserted after given rows (written to tmp)."""

from __future__ import annotations

import gzip
from pathlib import Path

EURUSD_2019 = "EURUSD_dukascopy_ticks_2019-01-01T23_2h36m.csv.gz"
# The line of issue #11: five weeks ahead of the file, at a plausible price.
FUTURE_LINE = "2019-02-09T00:00:00.000Z,1.1454,1.1455"


def rows_of(path: Path) -> tuple[str, list[str]]:
    """(header, data lines) of a plain or gzip'd tick file."""
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    return lines[0], lines[1:]


def poisoned(source: Path, dest: Path, inserts: dict[int, list[str]]) -> Path:
    """``source`` with ``inserts[n]`` placed after data row ``n`` (1-based), as plain CSV."""
    header, rows = rows_of(source)
    out = [header]
    for n, row in enumerate(rows, start=1):
        out.append(row)
        out += inserts.get(n, [])
    dest.write_text("\n".join(out) + "\n")
    return dest


def at(row: str, bid_shift: float, ms: int = 0) -> str:
    """A copy of ``row`` (``ts,bid,ask``) with both prices shifted and the time kept."""
    ts, bid, ask = row.split(",")
    return f"{ts},{float(bid) + bid_shift:.5f},{float(ask) + bid_shift:.5f}"


def spikes(source: Path, after: int, shift: float, count: int) -> list[str]:
    """``count`` bad prints ``shift`` away from the price of data row ``after``."""
    _, rows = rows_of(source)
    return [at(rows[after - 1], shift)] * count
