"""Running a prepared backtest: units of work (variant x market x chunk of trades), each
trade's stages and ladder in a variant, and the worker processes.

Units run in worker processes (``--jobs``; fork where available, so the tick arrays are shared,
not copied) and their rows are merged in unit order, so the output never depends on scheduling.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace

from traild.backtest.adaptive import run_realtime, variant_tables
from traild.backtest.bars import inside_bar_fill
from traild.backtest.kernel import KernelTrade
from traild.backtest.markets import Market
from traild.backtest.paths import FAST, run_trades
from traild.backtest.rows import TradeRow, premature_stopouts, trade_row
from traild.backtest.signals import TradeSpec
from traild.backtest.variants import Variant
from traild.core.calculator import CalculatorParams, DynamicTrailingCalculator
from traild.core.conditions import ConditionParams
from traild.core.instruments import to_centipips
from traild.core.ladder import LadderPlan, LadderPolicy
from traild.core.market import MarketConditions
from traild.core.stageconfig import CalculatedStages, RegimeTables, StageConfig

_FAST_CHUNK = 4000  # at most this many trades per unit on the fast path
_MIN_CHUNK = 200  # at least this many (smaller batches waste the kernel's vectorisation)
_STEPS = 40  # aim for about this many progress steps per run
_FAST_WORK_PER_JOB = 100_000  # trade runs per worker process on the fast path
_EVENT_WORK_PER_JOB = 2_000  # ... on the event-driven path (about a millisecond each)


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


Unit = tuple[int, int, tuple[int, ...]]  # variant, market, trade ids
_CTX: Context | None = None


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
        trade_row(variant.name, market, t, cs, r, p, lock_ticks, path)
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
