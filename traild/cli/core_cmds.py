"""``traild check-config``, ``traild calc`` and ``traild simulate``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from traild.backtest.simulate import SimulationRequest, simulate
from traild.cli import args as args_
from traild.cli.args import CONFIG_HELP
from traild.config.settings import describe_sources, load
from traild.core.calculator import DynamicTrailingCalculator, MarketConditions
from traild.core.errors import DataError

EPIC_HELP = "IG epic, e.g. CS.D.EURUSD.MINI.IP (or a configured [instruments] key)"
REGIME_HELP = (
    "volatility regime: low, normal, high or extreme (any other value: normal, with a warning)"
)
SESSION_HELP = "trading session: asian, london, overlap or new_york (other values: factor 1.0)"
ATR_HELP = "ATR(14) in pips; 0 or negative is the invalid_atr fallback"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate a config file and print the effective one",
        description="Validate the configuration (file, then TRAILD_* environment over it, then "
        "the database's `traild config` overrides when the database exists) and print the "
        "effective one as JSON, secrets masked; the sources used go to stderr.",
    )
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument(
        "--sources",
        action="store_true",
        help="one line per value with where it came from (default|file|environment|database)",
    )
    p.set_defaults(func=_check_config)

    p = sub.add_parser("calc", help="the stages a trade would get")
    p.add_argument("--epic", required=True, help=EPIC_HELP)
    p.add_argument("--atr-pips", type=args_.positive_or_any_float, metavar="X", help=ATR_HELP)
    p.add_argument("--regime", metavar="R", help=REGIME_HELP)
    p.add_argument("--session", metavar="S", help=SESSION_HELP)
    p.add_argument("--scalp", action="store_true", help="use the scalp stage config")
    p.add_argument("--market-regime", metavar="M", help="trending, ranging, breakout, ...")
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object (SPEC §7)")
    p.set_defaults(func=_calc)

    p = sub.add_parser(
        "simulate",
        help="one trade through the ladder over a tick file",
        description="Run one trade over a tick file (CSV or gzip'd CSV, ts_utc,bid,ask) "
        "through the ladder; conditions not given are derived from the ticks before the entry. "
        "Ticks the tick guard rejects are counted by reason.",
    )
    p.add_argument("--ticks", required=True, metavar="FILE", help="the tick file")
    p.add_argument("--epic", required=True, help=EPIC_HELP)
    p.add_argument(
        "--direction",
        required=True,
        type=args_.direction,
        metavar="BUY|SELL",
        help=args_.DIRECTION_HELP,
    )
    stop = p.add_mutually_exclusive_group(required=True)
    stop.add_argument(
        "--stop-pips", type=args_.positive_float, metavar="N", help="initial stop, pips from entry"
    )
    stop.add_argument(
        "--stop", type=args_.positive_float, metavar="PRICE", help="initial stop as a price"
    )
    limit = p.add_mutually_exclusive_group()
    limit.add_argument(
        "--limit-pips", type=args_.positive_float, metavar="N", help="limit, pips from entry"
    )
    limit.add_argument(
        "--limit", type=args_.positive_float, metavar="PRICE", help="limit as a price"
    )
    p.add_argument(
        "--entry",
        type=args_.positive_float,
        metavar="PRICE",
        help="fill price (default: ask of the entry tick for a BUY, bid for a SELL)",
    )
    p.add_argument(
        "--at",
        type=args_.timestamp,
        metavar="TS",
        help="enter at the first tick at/after this ISO-8601 time, e.g. 2014-05-06T08:00:00Z "
        "(no zone: UTC; default: the first tick)",
    )
    p.add_argument("--atr-pips", type=args_.positive_or_any_float, metavar="X", help=ATR_HELP)
    p.add_argument("--regime", metavar="R", help=REGIME_HELP)
    p.add_argument("--session", metavar="S", help=SESSION_HELP)
    p.add_argument("--scalp", action="store_true", help="use the scalp stage config")
    p.add_argument(
        "--min-stop-distance-pips",
        type=args_.non_negative_float,
        metavar="N",
        help="the broker's minimum stop distance (default: the instrument's)",
    )
    p.add_argument("--market-regime", metavar="M", help="trending, ranging, breakout, ...")
    p.add_argument(
        "--realtime-recalc",
        action="store_true",
        default=None,
        help="recalculate the stages at each closed bar of the ticks (default: the config's)",
    )
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object (SPEC §7)")
    p.set_defaults(func=_simulate)


# -- commands ---------------------------------------------------------------------------
def _check_config(args: argparse.Namespace) -> int:
    """The file and environment validated, with the database's overrides when it has any."""
    from traild.cli.config_db import check_config_sources

    settings, sources, note = check_config_sources(args.config)
    if not args.sources:
        print(json.dumps(settings.redacted(), indent=2, sort_keys=False))
    else:
        width = max(len(k) for k in sources)
        for key, (value, source) in sources.items():
            print(f"{key:<{width}}  {json.dumps(value):<24} {source}")
    sys.stderr.write(f"traild: configuration OK; {describe_sources(args.config)}\n")
    if note:
        sys.stderr.write(f"traild: note: {note}\n")
    return 0


def _calc(args: argparse.Namespace) -> int:
    from traild.cli.config_db import check_config_sources

    settings = check_config_sources(args.config)[0]  # with the database's overrides, if any
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
    """The result for a reader: what the stages were computed from (and the market regime),
    the stages in force at entry, then amendments and real-time recalculations in time order
    (each recalculation with the stages it put in force), the exit and rejected ticks."""
    reason = f" ({r['fallback_reason']})" if r["fallback_reason"] else ""
    limit = "none" if r["limit"] is None else r["limit"]
    recalcs = r.get("recalculations", [])
    first = recalcs[0] if recalcs else None
    print(
        f"method {r['method']}{reason}; entry {r['entry']} stop {r['initial_stop']} limit {limit}"
    )
    c = r["conditions"]
    parts = [
        f"{_LABELS[key]} {_text(c[key])} ({c['source'][key]})"
        if c[key] is not None or c["source"][key] != "ticks"
        else f"{_LABELS[key]} n/a (too few ticks before the entry)"
        for key in ("atr_pips", "regime", "session", "market_regime")
        if key in c
    ]
    print("conditions: " + ", ".join(parts))
    table = r.get("regime_table")
    in_force = r["stages"] if first is None else first["old_stages"]
    suffix = f" ({table} regime table)" if table else ""
    print(f"stages at entry{suffix}: {_stage_text(in_force)}")
    for warning in r.get("warnings", ()):
        print(f"  warning: {warning}")
    events: list[tuple[str, int, str]] = []
    for a in r["amendments"]:
        events.append((a["ts"], 1, f"  {a['ts']}  {_text(a['from'])} -> {a['to']}  {a['reason']}"))
    for e in recalcs:
        why = f" ({e['fallback_reason']})" if e["fallback_reason"] else ""
        line = (
            f"  {e['ts']}  recalculated: volatility {_text(e['old_regime'])} -> "
            f"{_text(e['new_regime'])}, ATR {_text(e['atr_pips'])} pips, market regime "
            f"{_text(e['market_regime'])}; method {e['method']}{why}\n"
            f"{'':26}stages now: {_stage_text(e['stages'])}"
        )
        events.append((e["ts"], 0, line))  # a recalculation at a bar close comes first
    if not events:
        print("  no amendment")
    for _, _, line in sorted(events, key=lambda ev: (ev[0], ev[1])):
        print(line)
    if recalcs:
        print(f"recalculations: {len(recalcs)}; stages at the exit: {_stage_text(r['stages'])}")
    elif "recalculations" in r:
        print("recalculations: none (no closed bar moved the volatility regime far enough)")
    e = r["exit"]
    at = f" at {e['price']} ({e['ts']})" if e["price"] is not None else ""
    gap = ", through a gap" if e["gap"] else ""
    print(
        f"exit {e['reason']}{at}{gap}; pnl {_text(e['pnl_pips'])} pips,"
        f" MFE {_text(r['mfe_pips'])} pips"
    )
    rejected = r["rejected_ticks"]
    if rejected:
        detail = ", ".join(f"{k} {v}" for k, v in rejected.items())
        print(f"rejected ticks: {sum(rejected.values())} ({detail})")
    else:
        print("rejected ticks: none")


_LABELS = {
    "atr_pips": "ATR pips",
    "regime": "volatility",
    "session": "session",
    "market_regime": "market regime",
}


def _stage_text(stages: dict[str, float]) -> str:
    """The ladder in pips on one line: trigger -> lock of each rung."""
    s = {k: _num(v) for k, v in stages.items()}
    return (
        f"early BE {s['early_be_trigger']} -> +{s['early_be_buffer']}, "
        f"stage 1 {s['stage1_trigger']} -> +{s['stage1_lock']}, "
        f"stage 2 {s['stage2_trigger']} -> +{s['stage2_lock']}, "
        f"stage 3 {s['stage3_trigger']} (trail ATR x{s['stage3_atr_multiplier']}, "
        f"min {s['stage3_min_distance']})"
    )


def _num(value: float) -> str:
    return f"{value:g}"


def _text(value: Any) -> str:
    """A value for human output: never a Python repr (None -> n/a)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
