"""``traild simulate``: one trade over a tick file through the core, as SPEC §7 shapes it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from traild.config.settings import Settings
from traild.core.calculator import CalculatedStages, DynamicTrailingCalculator
from traild.core.conditions import BarHistory, TickGuard
from traild.core.errors import DataError, UsageError
from traild.core.instruments import Instrument, to_centipips
from traild.core.ladder import Ladder, LadderPlan
from traild.core.market import MarketConditions, completed, present
from traild.core.messages import Direction
from traild.core.realtime import RealtimeRecalc, Recalculated
from traild.core.replay import TradeOutcome, pnl_ticks, run_trade


@dataclass(frozen=True, slots=True)
class SimulationRequest:
    ticks: str
    epic: str
    direction: Direction
    stop_pips: float | None = None
    stop: float | None = None
    limit_pips: float | None = None
    limit: float | None = None
    entry: float | None = None
    at: datetime | None = None
    atr_pips: float | None = None
    regime: str | None = None
    session: str | None = None
    is_scalp: bool = False
    min_stop_distance_pips: float | None = None
    market_regime: str | None = None
    realtime_recalc: bool | None = None  # None: ``[trailing] realtime_recalc``


def iso(ts: datetime | None) -> str | None:
    """UTC time as ``2014-05-01T00:01:02.123Z``."""
    if ts is None:
        return None
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def simulate(settings: Settings, req: SimulationRequest) -> dict[str, Any]:
    """Run the trade and return the JSON object of SPEC §7."""
    inst = settings.instrument_table().resolve(req.epic)
    guard = TickGuard(settings.guard_params(float(inst.pip_size)))
    history = BarHistory(float(inst.pip_size), settings.condition_params())
    ticks = _accepted(_rows(req.ticks), guard)
    entry_tick = None
    for ts, bid, ask in ticks:
        if req.at is None or ts >= req.at:
            entry_tick = (ts, bid, ask)
            break
        history.add(ts, bid, ask)
    if entry_tick is None:
        raise DataError(f"{req.ticks}: no tick at or after {iso(req.at) or 'the start'}")
    ts0, bid0, ask0 = entry_tick
    market = ask0 if req.direction is Direction.BUY else bid0
    entry_warnings = _check_entry(settings, inst, req, market, ts0)
    entry = inst.to_ticks(req.entry if req.entry is not None else market)
    stop = stop_level(inst, req.direction, entry, req.stop, req.stop_pips, adverse=True)
    limit = stop_level(inst, req.direction, entry, req.limit, req.limit_pips, adverse=False)
    assert stop is not None
    # the given conditions, completed from the ticks before the entry (as the daemon does)
    given = MarketConditions(req.epic, req.atr_pips, req.regime, req.session, req.market_regime)
    conditions = completed(given, history.conditions(req.epic, ts0))
    history.add(ts0, bid0, ask0)  # the fill tick shapes the bars real-time recalculation uses
    stages = _stages(settings, req, conditions)
    min_dist = req.min_stop_distance_pips
    if min_dist is None:
        min_dist = float(inst.min_stop_distance_pips)
    policy = settings.ladder_policy(min_dist)

    def compile_(result: CalculatedStages) -> LadderPlan:
        return LadderPlan.compile(result.stages, inst, policy, result.atr_pips)

    ladder = Ladder(compile_(stages), req.direction, entry, stop, limit)
    lock_trigger = to_centipips(policy.profit_lock_trigger_pips) * inst.ticks_per_pip
    recalc = None
    source: Iterator[tuple[datetime, int, int]] = _as_ticks(ticks, inst)
    realtime = req.realtime_recalc
    if realtime or (realtime is None and settings.trailing.realtime_recalc):
        recalc = RealtimeRecalc(
            DynamicTrailingCalculator(settings.calculator_params()),
            stages,
            settings.stage_config(req.epic, req.is_scalp),
            history,
            compile_,
            req.epic,
            req.is_scalp,
            settings.trailing.realtime_regime_shift,
            settings.regime_tables(req.epic, req.is_scalp),
            conditions.market_regime,
        )
        source = recalc.ticks(ladder, ticks, inst)
    outcome = run_trade(ladder, source, lock_trigger)
    result = _result(inst, req.direction, entry, stop, limit, stages, outcome)
    # beyond SPEC §7's shape only when regime tables or recalculation are in play
    if stages.market_regime is not None or recalc is not None:
        result["market_regime"] = conditions.market_regime
        result["regime_table"] = stages.market_regime
    if recalc is not None:
        result["stages"] = recalc.stages.stages.as_dict()
        result["recalculations"] = [_recalculated(e) for e in recalc.events]
    result["conditions"] = _conditions(given, conditions)
    warnings = [*entry_warnings, *stages.warnings]  # e.g. an unknown --regime
    if warnings:
        result["warnings"] = warnings
    result["rejected_ticks"] = dict(sorted(guard.by_reason.items()))
    return result


# An --entry this many pips from the market price of the entry tick is reported with the
# result; beyond the tick guard's largest credible move (``max_tick_jump_pips``) it is refused:
# such a fill is a typo (5.0 for 1.15), and its thousands of pips would read as a result.
ENTRY_WARN_PIPS = 20.0


def _check_entry(
    settings: Settings, inst: Instrument, req: SimulationRequest, market: float, ts: datetime
) -> list[str]:
    if req.entry is None:
        return []
    off = round(float(inst.pips(inst.to_ticks(req.entry) - inst.to_ticks(market))), 1)
    where = f"--entry {req.entry:g} is {abs(off):g} pips from the market ({market:g} at {iso(ts)})"
    if abs(off) > settings.conditions.max_tick_jump_pips:
        limit = settings.conditions.max_tick_jump_pips
        raise UsageError(f"{where}: more than {limit:g} pips away; check the price")
    return [where] if abs(off) > ENTRY_WARN_PIPS else []


def _recalculated(e: Recalculated) -> dict[str, Any]:
    return {
        "ts": iso(e.ts),
        "old_regime": e.old.volatility_regime,
        "new_regime": e.new.volatility_regime,
        "market_regime": e.conditions.market_regime,
        "atr_pips": e.conditions.atr_pips,
        "method": e.new.method,
        "fallback_reason": e.new.fallback_reason,
        "old_stages": e.old.stages.as_dict(),
        "stages": e.new.stages.as_dict(),
    }


def _conditions(given: MarketConditions, used: MarketConditions) -> dict[str, Any]:
    """The conditions the stages were computed from, and where each came from."""
    fields = {
        "atr_pips": (given.atr_pips, used.atr_pips),
        "regime": (given.volatility_regime, used.volatility_regime),
        "session": (given.session, used.session),
        "market_regime": (given.market_regime, used.market_regime),
    }
    out: dict[str, Any] = {k: u for k, (_, u) in fields.items()}
    out["source"] = {k: "given" if present(g) else "ticks" for k, (g, _) in fields.items()}
    return out


def _rows(path: str) -> Iterator[tuple[int, float, float]]:
    """The rows of a tick file as (epoch ms, bid, ask)."""
    from traild.adapters.tickfiles import load_ticks

    columns = load_ticks(path)
    ms, bids, asks = columns.ts_ms.tolist(), columns.bid.tolist(), columns.ask.tolist()
    yield from zip(ms, bids, asks, strict=True)


def _accepted(
    source: Iterator[tuple[int, float, float]], guard: TickGuard
) -> Iterator[tuple[datetime, float, float]]:
    from traild.adapters.tickfiles import ms_to_datetime

    for ms, bid, ask in source:
        if guard.check_ms(ms, bid, ask) is None:
            yield ms_to_datetime(ms), bid, ask


def _as_ticks(
    source: Iterator[tuple[datetime, float, float]], inst: Instrument
) -> Iterator[tuple[datetime, int, int]]:
    to_ticks = inst.to_ticks
    for ts, bid, ask in source:
        yield ts, to_ticks(bid), to_ticks(ask)


def stop_level(
    inst: Instrument,
    direction: Direction,
    entry: int,
    price: float | None,
    pips: float | None,
    adverse: bool,
) -> int | None:
    """Absolute stop (``adverse``) or limit level in ticks; pip distances are widened to
    whole ticks; an absolute level on the wrong side of the entry is an error."""
    sign = direction.sign * (-1 if adverse else 1)
    what = "stop" if adverse else "limit"
    if price is not None:
        level = inst.to_ticks(price)
        if (level - entry) * sign <= 0:
            side = "below" if sign < 0 else "above"
            raise DataError(
                f"{what} {price} must be {side} the entry {inst.to_price(entry)} "
                f"for a {direction.value}"
            )
        return level
    if pips is None:
        return None
    level = entry + sign * inst.centipips_to_ticks_ceil(to_centipips(pips))
    if level <= 0:
        raise DataError(
            f"{what} {pips} pips from the entry {inst.to_price(entry)} is not a positive price"
        )
    return level


def _stages(
    settings: Settings, req: SimulationRequest, conditions: MarketConditions
) -> CalculatedStages:
    calc = DynamicTrailingCalculator(settings.calculator_params())
    base = settings.stage_config(req.epic, req.is_scalp)
    regimes = settings.regime_tables(req.epic, req.is_scalp)
    return calc.calculate_stages(conditions, base, req.is_scalp, epic=req.epic, regimes=regimes)


def _result(
    inst: Instrument,
    direction: Direction,
    entry: int,
    stop: int,
    limit: int | None,
    stages: CalculatedStages,
    out: TradeOutcome[datetime],
) -> dict[str, Any]:
    price = inst.to_price
    mfe = None if out.best is None else round(inst.pips(direction.sign * (out.best - entry)), 2)
    pnl = None
    if out.exit_price is not None:
        pnl = round(inst.pips(pnl_ticks(direction, entry, out.exit_price)), 2)
    return {
        "method": stages.method,
        "fallback_reason": stages.fallback_reason,
        "stages": stages.stages.as_dict(),
        "entry": price(entry),
        "initial_stop": price(stop),
        "limit": None if limit is None else price(limit),
        "amendments": [
            {
                "ts": iso(a.ts),
                "from": None if a.old is None else price(a.old),
                "to": price(a.new),
                "reason": a.reason.value,
            }
            for a in out.amendments
        ],
        "exit": {
            "ts": iso(out.exit_ts),
            "price": None if out.exit_price is None else price(out.exit_price),
            "reason": out.exit_reason,
            "gap": out.gap,
            "pnl_pips": pnl,
        },
        "mfe_pips": mfe,
    }
