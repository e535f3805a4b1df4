"""The backtest run: load ticks, resolve entries and variants (``prepare``), then trail every
trade in every variant, in parallel (``backtest.units``), into rows (``backtest.rows``).

``TradeRow``, ``Context``, ``execute``, ``plan_trades``, ``units_of``, ``auto_jobs`` and
``premature_stopouts`` are re-exported: ``traild.backtest.engine`` stays the entry point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from traild.backtest.bars import load_bar_market
from traild.backtest.entries import generate
from traild.backtest.markets import Market, TickSource, load_market
from traild.backtest.paths import EVENT, FAST
from traild.backtest.rows import TradeRow, premature_stopouts
from traild.backtest.signals import (
    RANDOM_DEFAULTS,
    RandomDefaults,
    TradeSpec,
    random_signals,
    read_signals,
    resolve,
)
from traild.backtest.units import Context, auto_jobs, execute, plan_trades, units_of
from traild.backtest.variants import (
    DEFAULT_VARIANTS,
    FIXED_LOCK,
    Variant,
    parse_grid,
    parse_variants,
)
from traild.config.settings import Settings
from traild.core.conditions import GuardParams
from traild.core.errors import DataError, UsageError
from traild.core.instruments import InstrumentTable

__all__ = [
    "BacktestRequest",
    "BacktestResult",
    "Context",
    "TradeRow",
    "auto_jobs",
    "execute",
    "load_markets",
    "plan_trades",
    "premature_stopouts",
    "prepare",
    "run_backtest",
    "units_of",
]


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    """What ``traild backtest`` was asked to do (CLI-independent)."""

    ticks: tuple[str, ...]
    signals: str | None = None
    random: int | None = None
    entries: str | None = None  # a test entry generator (traild.backtest.entries)
    bars: tuple[str, ...] = ()  # M1 bid-bar files, FILE[=EPIC]
    ask_bars: tuple[str, ...] = ()  # their ask bars, in the same order (else the spread)
    bar_spread_pips: float = 1.0
    walk_forward: int | None = None
    seed: int = 0
    variants: str = DEFAULT_VARIANTS
    grid: tuple[str, ...] = ()
    lookahead_minutes: float = 60.0
    jobs: int = 1
    engine: str = FAST
    defaults: RandomDefaults = RANDOM_DEFAULTS  # random entries' stops and limits
    tick_cache: bool = True  # parsed tick files from/to traild.adapters.tickcache


@dataclass(frozen=True, slots=True)
class BacktestResult:
    request: BacktestRequest
    variants: tuple[Variant, ...]
    markets: tuple[Market, ...]
    trades: tuple[TradeSpec, ...]
    rows: tuple[TradeRow, ...]


Note = Callable[[str], None]  # a progress line for the user (``traild backtest``: stderr)


def prepare(
    settings: Settings,
    req: BacktestRequest,
    defaults: RandomDefaults | None = None,
    note: Note | None = None,
) -> Context:
    """Load the ticks and resolve entries and variants; every input error surfaces here.
    ``note`` hears a line per file read and when the entries are resolved."""
    if req.engine not in (FAST, EVENT):
        raise DataError(f"unknown engine {req.engine!r}")
    if not math.isfinite(req.lookahead_minutes) or req.lookahead_minutes <= 0:
        raise DataError("--lookahead must be a positive number of minutes")
    # The rollout allowlist is a live control: the backtest predicts dynamic trailing for
    # every pair, which is what an operator needs before widening the rollout.
    calc = replace(settings.calculator_params(), dynamic_trailing_pairs=frozenset())
    variants = parse_variants(req.variants) if req.variants else []
    variants += parse_grid(req.grid, calc)
    if not variants:
        raise UsageError(f"no variants to run: give --variants (e.g. {DEFAULT_VARIANTS}) or --grid")
    if req.walk_forward is not None and (
        req.walk_forward < 2
        or FIXED_LOCK not in {v.name for v in variants}
        or not any(v.dynamic for v in variants)
    ):
        raise UsageError("--walk-forward K needs K >= 2, fixed+lock and dynamic variants (--grid)")
    table = settings.instrument_table()
    markets = load_markets(req, table, settings.guard_params, note)
    if note:
        note("finding the entries and their market conditions")
    if req.signals is not None:
        signals = read_signals(req.signals, markets, table)
    elif req.entries is not None:
        signals = generate(req.entries, markets, defaults or req.defaults)
    else:
        signals = random_signals(req.random or 0, req.seed, markets, defaults or req.defaults)
    trades = tuple(
        resolve(
            signals,
            markets,
            settings.condition_params(),
            clamp_to_data=req.random is not None,
            max_fill_delay_ms=round(settings.conditions.max_tick_gap_hours * 3_600_000),
        )
    )
    bases = {(t.epic, t.is_scalp): settings.stage_config(t.epic, t.is_scalp) for t in trades}
    if note:
        runs = len(trades) * len(variants)
        note(f"{len(trades):,} entries x {len(variants)} variants: {runs:,} trade runs to trail")
    return Context(
        markets,
        trades,
        tuple(variants),
        calc,
        settings.ladder_policy(),
        bases,
        round(req.lookahead_minutes * 60_000),
        req.engine,
        {key: settings.regime_tables(*key) for key in bases},
        settings.condition_params(),
        settings.trailing.realtime_regime_shift,
    )


def load_markets(
    req: BacktestRequest,
    table: InstrumentTable,
    guard: Callable[[float], GuardParams] = GuardParams.for_pip,
    note: Note | None = None,
) -> tuple[Market, ...]:
    """The tick files (through the shared tick guard, ``guard``: its params for a pip size),
    then the bar files (with their ask bars or the spread)."""
    if not req.ticks and not req.bars:
        raise UsageError("give --ticks FILE or --bars FILE")
    if req.ask_bars and len(req.ask_bars) != len(req.bars):
        raise UsageError("--ask-bars needs one file per --bars file, in the same order")
    if not math.isfinite(req.bar_spread_pips) or req.bar_spread_pips < 0:
        raise DataError("the bar spread must be a non-negative number of pips")
    n, markets = len(req.ticks) + len(req.bars), list[Market]()
    for t in req.ticks:
        source = _reading(note, t, len(markets), n)
        markets.append(load_market(source, table, guard, cache=req.tick_cache))
    asks: list[Path | None] = [Path(a) for a in req.ask_bars] or [None] * len(req.bars)
    for b, ask in zip(req.bars, asks, strict=True):
        source = _reading(note, b, len(markets), n)
        markets.append(load_bar_market(source, table, req.bar_spread_pips, ask))
    return tuple(markets)


def _reading(note: Note | None, text: str, done: int, total: int) -> TickSource:
    source = TickSource.parse(text)
    if note:
        note(f"reading {source.path.name} ({done + 1} of {total})")
    return source


def run_backtest(
    settings: Settings,
    req: BacktestRequest,
    progress: Callable[[int, int], None] | None = None,
    note: Note | None = None,
) -> BacktestResult:
    ctx = prepare(settings, req, note=note)
    rows = execute(ctx, req.jobs, progress)
    return BacktestResult(req, ctx.variants, ctx.markets, ctx.trades, tuple(rows))
