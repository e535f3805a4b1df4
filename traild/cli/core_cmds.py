"""``traild check-config``, ``traild calc`` and ``traild simulate``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from traild.cli import args as args_
from traild.core.calculator import DynamicTrailingCalculator, MarketConditions
from traild.core.errors import DataError
from traild.settings import load
from traild.simulation import SimulationRequest, simulate


def register(sub: Any) -> None:
    p = sub.add_parser("check-config", help="validate a config file and print the effective one")
    p.add_argument("--config", metavar="PATH")
    p.set_defaults(func=_check_config)

    p = sub.add_parser("calc", help="the stages a trade would get")
    p.add_argument("--epic", required=True)
    p.add_argument("--atr-pips", type=args_.positive_or_any_float, metavar="X")
    p.add_argument("--regime", metavar="R")
    p.add_argument("--session", metavar="S")
    p.add_argument("--scalp", action="store_true")
    p.add_argument("--market-regime", metavar="M", help="trending, ranging, breakout, ...")
    p.add_argument("--config", metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_calc)

    p = sub.add_parser("simulate", help="one trade through the ladder over a tick file")
    p.add_argument("--ticks", required=True, metavar="FILE")
    p.add_argument("--epic", required=True)
    p.add_argument("--direction", required=True, type=args_.direction)
    stop = p.add_mutually_exclusive_group(required=True)
    stop.add_argument("--stop-pips", type=args_.positive_float, metavar="N")
    stop.add_argument("--stop", type=args_.positive_float, metavar="PRICE")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("--limit-pips", type=args_.positive_float, metavar="N")
    limit.add_argument("--limit", type=args_.positive_float, metavar="PRICE")
    p.add_argument("--entry", type=args_.positive_float, metavar="PRICE")
    p.add_argument("--at", type=args_.timestamp, metavar="TS")
    p.add_argument("--atr-pips", type=args_.positive_or_any_float, metavar="X")
    p.add_argument("--regime", metavar="R")
    p.add_argument("--session", metavar="S")
    p.add_argument("--scalp", action="store_true")
    p.add_argument("--min-stop-distance-pips", type=args_.non_negative_float, metavar="N")
    p.add_argument("--market-regime", metavar="M", help="trending, ranging, breakout, ...")
    p.add_argument(
        "--realtime-recalc",
        action="store_true",
        default=None,
        help="recalculate the stages at each closed bar of the ticks (default: the config's)",
    )
    p.add_argument("--config", metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_simulate)


# -- commands ---------------------------------------------------------------------------
def _check_config(args: argparse.Namespace) -> int:
    settings = load(args.config)
    print(json.dumps(settings.redacted(), indent=2, sort_keys=False))
    return 0


def _calc(args: argparse.Namespace) -> int:
    settings = load(args.config)
    table = settings.instrument_table()
    table.resolve(args.epic)  # an unknown epic is an error, never a silent default
    base = settings.stage_config(args.epic, args.scalp)
    conditions = None
    if args.atr_pips is not None or args.regime or args.session or args.market_regime:
        conditions = MarketConditions(
            args.epic, args.atr_pips, args.regime, args.session, args.market_regime
        )
    calc = DynamicTrailingCalculator(settings.calculator_params())
    regimes = settings.regime_tables(args.epic, args.scalp)
    result = calc.calculate_stages(conditions, base, args.scalp, epic=args.epic, regimes=regimes)
    out: dict[str, Any] = {
        "method": result.method,
        "fallback_reason": result.fallback_reason,
        "factor": None if result.factor is None else round(result.factor, 4),
        "stages": result.stages.as_dict(),
        "inputs": {
            "epic": args.epic,
            "atr_pips": args.atr_pips,
            "regime": args.regime,
            "session": args.session,
            "is_scalp": args.scalp,
        },
    }
    if args.market_regime is not None:
        out["inputs"]["market_regime"] = args.market_regime
    if result.market_regime is not None:
        out["regime_table"] = result.market_regime
    if result.warnings:
        out["warnings"] = list(result.warnings)
    if result.out_of_range:
        out["out_of_range"] = list(result.out_of_range)
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"{args.epic} ({'scalp' if args.scalp else 'regular'}): method {result.method}"
        + (f", fallback {result.fallback_reason}" if result.fallback_reason else "")
        + (f", factor {out['factor']}" if result.factor is not None else "")
        + (f", {result.market_regime} stages" if result.market_regime else "")
    )
    for name, value in result.stages.as_dict().items():
        print(f"  {name:<22} {value:>8.2f}")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    settings = load(args.config)
    request = SimulationRequest(
        ticks=args.ticks,
        epic=args.epic,
        direction=args.direction,
        stop_pips=args.stop_pips,
        stop=args.stop,
        limit_pips=args.limit_pips,
        limit=args.limit,
        entry=args.entry,
        at=args.at,
        atr_pips=args.atr_pips,
        regime=args.regime,
        session=args.session,
        is_scalp=args.scalp,
        min_stop_distance_pips=args.min_stop_distance_pips,
        market_regime=args.market_regime,
        realtime_recalc=args.realtime_recalc,
    )
    try:
        result = simulate(settings, request)
    except (ValueError, ArithmeticError) as exc:  # e.g. --entry 1e308: no price on the grid
        raise DataError(f"cannot simulate this trade: {exc}") from None
    if args.json:
        print(json.dumps(result))
        return 0
    _print_simulation(result)
    return 0


def _print_simulation(r: dict[str, Any]) -> None:
    reason = f" ({r['fallback_reason']})" if r["fallback_reason"] else ""
    print(
        f"method {r['method']}{reason}; entry {r['entry']} stop {r['initial_stop']}"
        f" limit {r.get('limit')}"
    )
    for a in r["amendments"]:
        print(f"  {a['ts']}  {a['from']} -> {a['to']}  {a['reason']}")
    e = r["exit"]
    print(
        f"exit {e['reason']} at {e['price']} ({e['ts']}), gap {e['gap']}, "
        f"pnl {e['pnl_pips']} pips, MFE {r['mfe_pips']} pips"
    )
