"""Backtest entries: a signals CSV or seeded random entries, resolved against the tick files.

Signals CSV columns (header names, any order; the last five optional):
``ts_utc, epic, direction, stop_pips, limit_pips[, is_scalp, atr_pips, volatility_regime,
session, market_regime]``. An empty ``limit_pips`` means no take-profit. Every entry fills at
the first accepted tick at/after its time (ask for a BUY, bid for a SELL), as ``simulate`` does;
conditions a signal does not give are computed from the ticks before the entry (SPEC §3).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from traild.adapters.tickfiles import EPOCH
from traild.backtest.markets import Ints, Market, entry_conditions
from traild.backtest.simulate import stop_level
from traild.core.conditions import ConditionParams
from traild.core.errors import DataError, InstrumentError
from traild.core.instruments import InstrumentTable
from traild.core.market import MarketConditions, completed
from traild.core.messages import Direction
from traild.core.numbers import finite_number

REQUIRED = ("ts_utc", "epic", "direction", "stop_pips", "limit_pips")
OPTIONAL = ("is_scalp", "atr_pips", "volatility_regime", "session", "market_regime")
_TRUE = frozenset(("1", "true", "yes", "y", "t", "scalp"))
_FALSE = frozenset(("", "0", "false", "no", "n", "f", "regular"))


@dataclass(frozen=True, slots=True)
class RandomDefaults:
    """Stop, limit and scalp share of random entries (pips); from ``[backtest]``."""

    stop_pips: float = 20.0
    limit_pips: float = 50.0
    scalp_stop_pips: float = 10.0
    scalp_limit_pips: float = 25.0
    scalp_share: float = 0.5


RANDOM_DEFAULTS = RandomDefaults()


@dataclass(frozen=True, slots=True)
class Signal:
    """An entry request before it is matched to a tick (times in epoch ms)."""

    ts_ms: int
    market: int
    epic: str
    direction: Direction
    stop_pips: float
    limit_pips: float | None
    is_scalp: bool = False
    atr_pips: float | None = None
    volatility_regime: str | None = None
    session: str | None = None
    market_regime: str | None = None
    where: str = ""


@dataclass(frozen=True, slots=True)
class TradeSpec:
    """A resolved entry: the fill tick, prices in ticks, and the market conditions at entry."""

    trade_id: int
    market: int
    epic: str
    direction: Direction
    is_scalp: bool
    entry_idx: int
    entry_ts: int
    entry: int
    stop: int
    limit: int | None
    conditions: MarketConditions


def read_signals(
    path: str | Path, markets: Sequence[Market], table: InstrumentTable
) -> list[Signal]:
    """Parse a signals CSV; raises DataError naming the file and line of a bad row."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise DataError(f"{p.name}: signals file lacks column(s) {', '.join(missing)}")
            out = []
            for line, row in enumerate(reader, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise DataError(f"{p.name}:{line}: expected {len(header)} fields")
                fields = dict(zip(header, (c.strip() for c in row), strict=True))
                out.append(_signal(fields, markets, table, f"{p.name}:{line}"))
    except OSError as exc:
        raise DataError(f"{p}: cannot read signals file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"{p}: signals file is not UTF-8 text") from None
    if not out:
        raise DataError(f"{p.name}: no signals")
    return out


def _signal(
    f: dict[str, str], markets: Sequence[Market], table: InstrumentTable, where: str
) -> Signal:
    try:
        epic = f["epic"]
        if not epic:
            raise ValueError("empty epic")
        return Signal(
            ts_ms=_ts_ms(f["ts_utc"]),
            market=_market_for(epic, markets, table),
            epic=epic,
            direction=Direction.parse(f["direction"]),
            stop_pips=_pips(f["stop_pips"], "stop_pips"),
            limit_pips=_pips(f["limit_pips"], "limit_pips") if f["limit_pips"] else None,
            is_scalp=_flag(f.get("is_scalp", "")),
            atr_pips=finite_number(f["atr_pips"], "atr_pips") if f.get("atr_pips") else None,
            volatility_regime=f.get("volatility_regime") or None,
            session=f.get("session") or None,
            market_regime=f.get("market_regime") or None,
            where=where,
        )
    except (ValueError, InstrumentError, DataError) as exc:
        raise DataError(f"{where}: {exc}") from None


def _ts_ms(text: str) -> int:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"ts_utc is not an ISO-8601 time: {text!r}") from None
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return (ts - EPOCH) // timedelta(milliseconds=1)


def _pips(text: str, name: str) -> float:
    value = finite_number(text, name)
    if value <= 0:
        raise ValueError(f"{name} must be positive: {text!r}")
    return value


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"is_scalp must be true or false: {text!r}")


def _market_for(epic: str, markets: Sequence[Market], table: InstrumentTable) -> int:
    """The tick file of an epic: the same epic, else the only file of the same instrument."""
    exact = [i for i, m in enumerate(markets) if m.epic.upper() == epic.upper()]
    symbol = table.resolve(epic).symbol  # an unknown epic is an error
    same = exact or [i for i, m in enumerate(markets) if m.instrument.symbol == symbol]
    if len(same) == 1:
        return same[0]
    if not same:
        raise ValueError(f"no tick file for epic {epic!r}")
    raise ValueError(f"epic {epic!r} matches {len(same)} tick files; name them with PATH=EPIC")


# A signal filled this long after its time is refused (the tick guard's longest credible gap,
# [conditions] max_tick_gap_hours: a weekend and a holiday, not years).
MAX_FILL_DELAY_MS = 96 * 3_600_000
GAP_MS = 5 * 60_000  # a stretch without ticks longer than this is not trading time (SPEC §8)
MAX_RANDOM = 100_000  # per run: 250,000 (x 3 variants) took 78 s CPU and 0.9 GB here


def trading_segments(ts_ms: Ints, gap_ms: int = GAP_MS) -> tuple[Ints, Ints]:
    """First and last tick index of each stretch of ticks with no gap longer than ``gap_ms``."""
    breaks = np.flatnonzero(np.diff(ts_ms) > gap_ms)
    first: Ints = np.concatenate(([0], breaks + 1)).astype(np.int64)
    last: Ints = np.concatenate((breaks, [ts_ms.size - 1])).astype(np.int64)
    return first, last


def random_signals(
    count: int, seed: int, markets: Sequence[Market], defaults: RandomDefaults = RANDOM_DEFAULTS
) -> list[Signal]:
    """``count`` entries uniform over the files' trading time, random direction and kind.

    Trading time is each file's tick span minus every gap of more than 5 minutes without ticks,
    so a weekend or an outage gets no entries and no entry piles up on the tick that reopens
    the market: a sampled time falls inside a segment, and its first tick at/after is in it too.
    """
    if count < 1:
        raise DataError("--random needs at least one trade")
    if count > MAX_RANDOM:
        raise DataError(f"--random {count}: at most {MAX_RANDOM:,} entries per run (memory)")
    capacity = sum(len(m) if m.entry_points is None else m.entry_points.size for m in markets)
    if count > capacity:
        raise DataError(
            f"--random {count}: more entries than the files have entry points ({capacity:,})"
        )
    starts, lengths, owner = [], [], []
    for k, m in enumerate(markets):
        points = m.ts_ms if m.entry_points is None else m.ts_ms[m.entry_points]
        first, last = trading_segments(points)
        starts.append(points[first])
        lengths.append(points[last] - points[first])
        owner.append(np.full(first.size, k, dtype=np.int64))
    seg_start, seg_len = np.concatenate(starts), np.concatenate(lengths)
    seg_market = np.concatenate(owner)
    total = int(seg_len.sum())
    if total <= 0:
        raise DataError("the tick files span no trading time to place random entries in")
    rng = np.random.default_rng(seed)
    u = rng.random(count) * float(total)
    buy = rng.integers(0, 2, count) == 1
    scalp = rng.random(count) < defaults.scalp_share
    ends = np.cumsum(seg_len)
    seg = np.minimum(np.searchsorted(ends, u, side="right"), seg_len.size - 1)
    into = np.minimum(np.floor(u - (ends[seg] - seg_len[seg])).astype(np.int64), seg_len[seg])
    at = (seg_start[seg] + into).tolist()
    which = seg_market[seg].tolist()
    out = []
    for i in range(count):
        k = which[i]
        sc = bool(scalp[i])
        out.append(
            Signal(
                ts_ms=at[i],
                market=k,
                epic=markets[k].epic,
                direction=Direction.BUY if buy[i] else Direction.SELL,
                stop_pips=defaults.scalp_stop_pips if sc else defaults.stop_pips,
                limit_pips=defaults.scalp_limit_pips if sc else defaults.limit_pips,
                is_scalp=sc,
                where=f"random entry {i}",
            )
        )
    out.sort(key=lambda s: (s.ts_ms, s.market))
    return out


def resolve(
    signals: Sequence[Signal],
    markets: Sequence[Market],
    params: ConditionParams,
    clamp_to_data: bool = False,
    max_fill_delay_ms: int = MAX_FILL_DELAY_MS,
) -> list[TradeSpec]:
    """Fill each signal at its entry tick; conditions from the signal, else from the ticks.

    A signal with no tick after its entry tick is an error, unless ``clamp_to_data`` (random
    entries) moves it to the last tick that still has one after it. So is a signal whose
    first tick comes more than ``max_fill_delay_ms`` later (a signal dated before the file, or
    in a hole of it): filling it there would be a trade the signal never asked for.
    """
    entries: list[int] = []
    for s in signals:
        m = markets[s.market]
        idx = m.entry_index(s.ts_ms)
        if idx > len(m) - 2:
            if not clamp_to_data:
                raise DataError(f"{s.where}: no tick after its entry in {m.source.path.name}")
            idx = m.last_entry_index()
        elif not clamp_to_data and int(m.ts_ms[idx]) - s.ts_ms > max_fill_delay_ms:
            raise DataError(_too_early(s, m, idx))
        entries.append(idx)
    derived: dict[int, dict[int, MarketConditions]] = {}
    for k, m in enumerate(markets):
        mine = [e for s, e in zip(signals, entries, strict=True) if s.market == k]
        derived[k] = entry_conditions(m, mine, params) if mine else {}
    return [
        _trade(i, s, markets[s.market], e, derived[s.market][e])
        for i, (s, e) in enumerate(zip(signals, entries, strict=True))
    ]


def _too_early(s: Signal, m: Market, idx: int) -> str:
    def day(ms: int) -> str:
        return (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d %H:%M")

    hours = (int(m.ts_ms[idx]) - s.ts_ms) / 3_600_000
    return (
        f"{s.where}: signal at {day(s.ts_ms)} UTC, but the first tick after it in "
        f"{m.source.path.name} is {hours:,.0f} h later ({day(int(m.ts_ms[idx]))}; the file "
        f"spans {day(int(m.ts_ms[0]))} to {day(int(m.ts_ms[-1]))}): not filled there"
    )


def _trade(i: int, s: Signal, m: Market, idx: int, derived: MarketConditions) -> TradeSpec:
    inst = m.instrument
    entry = int(m.ask[idx] if s.direction is Direction.BUY else m.bid[idx])
    stop = stop_level(inst, s.direction, entry, None, s.stop_pips, adverse=True)
    limit = stop_level(inst, s.direction, entry, None, s.limit_pips, adverse=False)
    assert stop is not None
    given = MarketConditions(s.epic, s.atr_pips, s.volatility_regime, s.session, s.market_regime)
    conditions = completed(given, derived)
    return TradeSpec(
        i,
        s.market,
        s.epic,
        s.direction,
        s.is_scalp,
        idx,
        int(m.ts_ms[idx]),
        entry,
        stop,
        limit,
        conditions,
    )
