"""Seeded synthetic tick files for tests that need *some* ticks, not the real shared data.

A fresh clone has no ``../shared/data/fx`` (the real files are never copied into the
repository), so tests that only need a plausible market write one of these to a temporary
folder. The walk stays within a few pips of its start for the first 40 % of the
file (like the real 2019 fixture's quiet night), then trends up 30 pips and down 40, so trades
reach the profit lock and the stages; ticks are strictly
increasing in time, one every 0.2–1.8 s, with a 0.3–1.5 pip spread: every tick passes the tick
guard. The same arguments always give the same file.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SyntheticSpec:
    """What a generated file looks like: its start, length, price level and precision."""

    start: datetime
    count: int
    mid: float
    pip: float
    digits: int
    seed: int


# The shapes of the two small 2019 Dukascopy fixtures (same start and size; other prices).
EURUSD_2019 = SyntheticSpec(datetime(2019, 1, 1, 23, tzinfo=UTC), 10_000, 1.1460, 0.0001, 5, 2019)
USDJPY_2019 = SyntheticSpec(datetime(2019, 1, 1, 23, tzinfo=UTC), 10_000, 109.50, 0.01, 3, 2020)


def _centre(n: int) -> list[float]:
    """Where the market is drawn to, in pips from the start: flat for the first 40 % (a trade
    opened on the first tick lives that long either way), up 30 pips, down 40, then flat."""
    knots_x = [0, 0.4 * n, 0.6 * n, 0.85 * n, n]
    return np.interp(np.arange(n), knots_x, [0.0, 0.0, 30.0, -10.0, -10.0]).tolist()


def _walk(noise: np.ndarray, centre: list[float], pull: float = 0.01) -> list[float]:
    """A walk pulled towards ``centre`` (an Ornstein-Uhlenbeck process: ~2 pips around it)."""
    x, out = 0.0, []
    for eps, c in zip(noise.tolist(), centre, strict=True):
        x += pull * (c - x) + eps
        out.append(x)
    return out


def synthetic_rows(spec: SyntheticSpec) -> list[str]:
    """The data lines ``ts_utc,bid,ask`` of ``spec`` (no header)."""
    rng = np.random.default_rng(spec.seed)
    n = spec.count
    gaps = rng.integers(200, 1800, size=n)
    ts_ms = int(spec.start.timestamp() * 1000) + np.cumsum(gaps)
    mid_pips = _walk(rng.normal(0.0, 0.3, size=n), _centre(n))
    spread_pips = rng.uniform(0.3, 1.5, size=n)
    mid = spec.mid + np.asarray(mid_pips) * spec.pip
    bid = np.round(mid - spread_pips * spec.pip / 2, spec.digits)
    ask = np.round(mid + spread_pips * spec.pip / 2, spec.digits)
    ask = np.maximum(ask, bid + 10.0**-spec.digits)  # never locked or crossed
    stamps = np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms")
    fmt = f"{{:.{spec.digits}f}}"
    return [
        f"{t}Z,{fmt.format(b)},{fmt.format(a)}"
        for t, b, a in zip(stamps.tolist(), bid.tolist(), ask.tolist(), strict=True)
    ]


def write_synthetic_ticks(path: Path, spec: SyntheticSpec) -> Path:
    """Write ``spec`` as a tick file (gzip'd when ``path`` ends in ``.gz``) and return ``path``."""
    text = "ts_utc,bid,ask\n" + "\n".join(synthetic_rows(spec)) + "\n"
    data = text.encode("ascii")
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path
