"""The backtest run: load ticks, resolve entries, trail every trade in every variant, in parallel.

Work is cut into units (variant x market x chunk of trades). Units run in worker processes
(``--jobs``; fork where available, so the tick arrays are shared, not copied) and their rows
are merged in unit order, so the output never depends on scheduling.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from traild.backtest.adaptive import run_realtime, variant_tables
from traild.backtest.bars import inside_bar_fill, load_bar_market
from traild.backtest.entries import generate
from traild.backtest.kernel import NONE, KernelTrade, PathResult
from traild.backtest.markets import Market, TickSource, load_market
from traild.backtest.paths import EVENT, FAST, run_trades
from traild.backtest.signals import (
    RANDOM_DEFAULTS,
    RandomDefaults,
    TradeSpec,
    random_signals,
    read_signals,
    resolve,
)
from traild.backtest.variants import (
    DEFAULT_VARIANTS,
    FIXED_LOCK,
    Variant,
    parse_grid,
    parse_variants,
)
from traild.config.settings import Settings
from traild.core.calculator import (
    CalculatedStages,
    CalculatorParams,
    DynamicTrailingCalculator,
    MarketConditions,
    RegimeTables,
    StageConfig,
)
from traild.core.conditions import ConditionParams, GuardParams
from traild.core.errors import DataError, UsageError
from traild.core.instruments import InstrumentTable, to_centipips
from traild.core.ladder import LadderPlan, LadderPolicy

_FAST_CHUNK = 4000  # at most this many trades per unit on the fast path
_MIN_CHUNK = 200  # at least this many (smaller batches waste the kernel's vectorisation)
_STEPS = 40  # aim for about this many progress steps per run
_FAST_WORK_PER_JOB = 100_000  # trade runs per worker process on the fast path
_EVENT_WORK_PER_JOB = 2_000  # ... on the event-driven path (about a millisecond each)


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


@dataclass(frozen=True, slots=True)
class TradeRow:
    """One trade in one variant, as reported (prices as floats on the tick grid, pips)."""

    variant: str
    trade_id: int
    epic: str
    direction: str
    is_scalp: bool
    entry_ts: int  # epoch ms
    entry: float
    initial_stop: float
    limit: float | None
    method: str
    fallback_reason: str | None
    atr_pips: float | None
    volatility_regime: str | None
    session: str | None
    market_regime: str | None
    exit_ts: int
    exit_price: float
    exit_reason: str
    exit_stop: float | None
    gap: bool
    pnl_pips: float
    mfe_pips: float
    slippage_pips: float | None  # stop exits: how far beyond the stop the fill was
    minutes_to_lock: float | None
    lock_violation: bool
    lock_slippage_loss: bool
    premature: bool
    amendments: int
    path: str  # fast | event (the kernel handed it back, or --engine event)
    recalculations: int = 0  # real-time recalculations of its stages (+rt variants)


@dataclass(frozen=True, slots=True)
class Context:
    """Plain values every unit needs (built once, shared with the workers)."""

    markets: tuple[Market, ...]
    trades: tuple[TradeSpec, ...]
    variants: tuple[Variant, ...]
    calc: CalculatorParams
    policy: LadderPolicy
    bases: dict[tuple[str, bool], StageConfig]
    lookahead_ms: int
    engine: str
    # regime stage tables of each (epic, is_scalp), real-time recalculation settings
    tables: dict[tuple[str, bool], RegimeTables] = field(default_factory=dict)
    conditions: ConditionParams = field(default_factory=ConditionParams)
    realtime_shift: int = 2


@dataclass(frozen=True, slots=True)
class BacktestResult:
    request: BacktestRequest
    variants: tuple[Variant, ...]
    markets: tuple[Market, ...]
    trades: tuple[TradeSpec, ...]
    rows: tuple[TradeRow, ...]


Unit = tuple[int, int, tuple[int, ...]]  # variant, market, trade ids
_CTX: Context | None = None


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
        markets.append(load_market(source, table, guard))
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


def units_of(ctx: Context, jobs: int) -> list[Unit]:
    """Variant x market x chunk of trades: chunks small enough that progress moves steadily
    and every core stays busy, big enough to amortise the kernel's numpy calls."""
    out: list[Unit] = []
    per_market = [
        [t.trade_id for t in ctx.trades if t.market == k] for k in range(len(ctx.markets))
    ]
    total = len(ctx.trades) * len(ctx.variants)
    if ctx.engine == FAST:
        size = min(_FAST_CHUNK, max(_MIN_CHUNK, math.ceil(total / _STEPS)))
    else:
        size = max(1, math.ceil(total / max(4 * max(jobs, 1), _STEPS)))
    for v in range(len(ctx.variants)):
        for k, ids in enumerate(per_market):
            out += [(v, k, tuple(ids[i : i + size])) for i in range(0, len(ids), size)]
    return out


def auto_jobs(work: int, engine: str, cores: int) -> int:
    """Worker processes for ``work`` trade runs (trades x variants): one per share of work
    that pays for a process (forking, shipping rows back), at most one per core. The fast
    kernel needs a lot of work before a second process pays; the event-driven core little."""
    per_job = _FAST_WORK_PER_JOB if engine == FAST else _EVENT_WORK_PER_JOB
    return max(1, min(cores, work // per_job))


def execute(
    ctx: Context, jobs: int, progress: Callable[[int, int], None] | None = None
) -> list[TradeRow]:
    """Run every unit (in ``jobs`` processes; 0: chosen from the work size) and merge the
    rows in a fixed order.

    ``progress(done, total)`` counts trade runs (trades x variants), once per finished chunk.
    """
    if jobs <= 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        work = len(ctx.trades) * len(ctx.variants)
        jobs = auto_jobs(work, ctx.engine, min(32, cores or os.cpu_count() or 1))
    units = units_of(ctx, jobs)
    total = sum(len(u[2]) for u in units)
    for market in ctx.markets:
        market.index()  # build before forking: workers inherit it
    results: list[list[TradeRow]]
    done = 0
    if jobs <= 1 or len(units) <= 1:
        _init(ctx)
        results = []
        for unit in units:
            results.append(_run_unit(unit))
            done += len(unit[2])
            if progress:
                progress(done, total)
    else:
        methods = multiprocessing.get_all_start_methods()
        mp = multiprocessing.get_context("fork" if "fork" in methods else None)
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(units)), mp_context=mp, initializer=_init, initargs=(ctx,)
        ) as pool:
            futures = {pool.submit(_run_unit, u): len(u[2]) for u in units}
            for future in as_completed(futures):
                done += futures[future]
                if progress:
                    progress(done, total)
            results = [f.result() for f in futures]
    order = {v.name: i for i, v in enumerate(ctx.variants)}
    rows = [row for part in results for row in part]
    rows.sort(key=lambda r: (order[r.variant], r.trade_id))
    return rows


def run_backtest(
    settings: Settings,
    req: BacktestRequest,
    progress: Callable[[int, int], None] | None = None,
    note: Note | None = None,
) -> BacktestResult:
    ctx = prepare(settings, req, note=note)
    rows = execute(ctx, req.jobs, progress)
    return BacktestResult(req, ctx.variants, ctx.markets, ctx.trades, tuple(rows))


def _init(ctx: Context) -> None:
    global _CTX
    _CTX = ctx


def _run_unit(unit: Unit) -> list[TradeRow]:
    ctx = _CTX
    if ctx is None:
        raise RuntimeError("backtest worker used before its context was set")
    v_idx, m_idx, ids = unit
    variant, market = ctx.variants[v_idx], ctx.markets[m_idx]
    trades = [ctx.trades[i] for i in ids]
    jobs, calcs, policy = plan_trades(ctx, variant, market, trades)
    counts = [0] * len(trades)
    if variant.realtime:
        results, paths, counts = run_realtime(
            market,
            trades,
            jobs,
            calcs,
            DynamicTrailingCalculator(variant.calculator_params(ctx.calc)),
            ctx.bases,
            _tables(ctx, variant),
            policy,
            ctx.conditions,
            ctx.realtime_shift,
        )
    else:
        results, paths = run_trades(market, jobs, ctx.engine)
    if market.kind == "bars":
        results = [inside_bar_fill(r, t.limit) for r, t in zip(results, trades, strict=True)]
    premature = premature_stopouts(market, trades, results, ctx.lookahead_ms)
    inst = market.instrument
    lock_ticks = inst.centipips_to_ticks_ceil(to_centipips(policy.profit_lock_pips))
    rows = [
        _row(variant.name, market, t, cs, r, p, lock_ticks, path)
        for t, cs, r, p, path in zip(trades, calcs, results, premature, paths, strict=True)
    ]
    return [
        replace(row, recalculations=n) if n else row for row, n in zip(rows, counts, strict=True)
    ]


def plan_trades(
    ctx: Context, variant: Variant, market: Market, trades: Sequence[TradeSpec]
) -> tuple[list[KernelTrade], list[CalculatedStages], LadderPolicy]:
    """Each trade's stages in ``variant`` and its compiled ladder, ready for either path."""
    inst = market.instrument
    calc = DynamicTrailingCalculator(variant.calculator_params(ctx.calc))
    policy = variant.ladder_policy(
        replace(ctx.policy, min_stop_distance_pips=float(inst.min_stop_distance_pips))
    )
    lock_trigger = to_centipips(policy.profit_lock_trigger_pips) * inst.ticks_per_pip
    stages: dict[tuple[str, bool, MarketConditions], CalculatedStages] = {}
    plans: dict[tuple[StageConfig, float | None], LadderPlan] = {}
    jobs: list[KernelTrade] = []
    calcs: list[CalculatedStages] = []
    tables = _tables(ctx, variant)
    for t in trades:
        key = (t.epic, t.is_scalp, t.conditions)
        if key not in stages:
            stages[key] = calc.calculate_stages(
                t.conditions,
                ctx.bases[(t.epic, t.is_scalp)],
                t.is_scalp,
                epic=t.epic,
                regimes=tables.get((t.epic, t.is_scalp)),
            )
        cs = stages[key]
        pkey = (cs.stages, cs.atr_pips)
        if pkey not in plans:
            plans[pkey] = LadderPlan.compile(cs.stages, inst, policy, cs.atr_pips)
        calcs.append(cs)
        jobs.append(
            KernelTrade(
                t.direction, t.entry_idx + 1, t.entry, t.stop, t.limit, plans[pkey], lock_trigger
            )
        )
    return jobs, calcs, policy


def _tables(ctx: Context, variant: Variant) -> dict[tuple[str, bool], RegimeTables]:
    """The regime tables a variant trails with (none unless it is a ``+regime`` variant)."""
    if not variant.regime:
        return {}
    return {key: variant_tables(t, variant.overrides, key[1]) for key, t in ctx.tables.items()}


def premature_stopouts(
    market: Market, trades: Sequence[TradeSpec], results: Sequence[PathResult], lookahead_ms: int
) -> list[bool]:
    """Stop exits (the initial stop included) whose limit traded within the lookahead (SPEC §8)."""
    n = len(market)
    picked = [
        i
        for i, (t, r) in enumerate(zip(trades, results, strict=True))
        if r.exit_reason == "stop" and t.limit is not None
    ]
    out = [False] * len(trades)
    if not picked:
        return out
    sign = np.array([trades[i].direction.sign for i in picked], dtype=np.int64)
    base = np.where(sign > 0, 0, n)
    start = base + np.array([results[i].exit_idx + 1 for i in picked], dtype=np.int64)
    lo = np.full(len(picked), NONE, dtype=np.int64)  # only the take-profit side matters
    hi = sign * np.array([trades[i].limit or 0 for i in picked], dtype=np.int64)
    k = market.index().first_crossing(start, lo, hi)
    inside = k < base + n
    at = np.where(inside, k, base)
    until = np.array([results[i].exit_ts for i in picked], dtype=np.int64) + lookahead_ms
    hit = inside & (market.ts_ms[at - base] <= until)
    for i, h in zip(picked, hit.tolist(), strict=True):
        out[i] = h
    return out


def _row(
    variant: str,
    market: Market,
    t: TradeSpec,
    cs: CalculatedStages,
    r: PathResult,
    premature: bool,
    lock_ticks: int,
    path: str,
) -> TradeRow:
    inst = market.instrument
    s, tpp, price = t.direction.sign, inst.ticks_per_pip, inst.to_price
    pnl = s * (r.exit_price - t.entry)
    # MFE over every tick since entry, the exit tick included (SPEC §1).
    best = s * r.exit_price if r.best is None else max(s * r.best, s * r.exit_price)
    stopped = r.exit_reason == "stop"
    locked = r.lock_ts is not None
    c = t.conditions
    return TradeRow(
        variant=variant,
        trade_id=t.trade_id,
        epic=t.epic,
        direction=t.direction.value,
        is_scalp=t.is_scalp,
        entry_ts=t.entry_ts,
        entry=price(t.entry),
        initial_stop=price(t.stop),
        limit=None if t.limit is None else price(t.limit),
        method=cs.method,
        fallback_reason=cs.fallback_reason,
        atr_pips=c.atr_pips,
        volatility_regime=c.volatility_regime,
        session=c.session,
        market_regime=c.market_regime,
        exit_ts=r.exit_ts,
        exit_price=price(r.exit_price),
        exit_reason=r.exit_reason,
        exit_stop=None if r.exit_stop is None else price(r.exit_stop),
        gap=r.gap,
        pnl_pips=pnl / tpp,
        mfe_pips=(best - s * t.entry) / tpp,
        slippage_pips=(
            s * (r.exit_stop - r.exit_price) / tpp if stopped and r.exit_stop is not None else None
        ),
        minutes_to_lock=None if r.lock_ts is None else (r.lock_ts - t.entry_ts) / 60_000,
        lock_violation=(
            stopped
            and locked
            and r.exit_stop is not None
            and s * (r.exit_stop - t.entry) < lock_ticks
        ),
        # SPEC §2: reached the trigger, stopped at/beyond entry, filled below it by slippage
        lock_slippage_loss=(
            stopped
            and locked
            and pnl < 0
            and r.exit_stop is not None
            and s * (r.exit_stop - t.entry) >= 0
        ),
        premature=premature,
        amendments=len(r.amendments),
        path=path,
    )
