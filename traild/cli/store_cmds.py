"""``traild migrate``, ``traild report`` and ``traild trade add``: the database from the shell.

The store (SQLAlchemy, Alembic) is imported by the commands that use it, not by ``traild --help``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime
from functools import partial
from typing import Any
from uuid import uuid4

import trio

from traild.backtest.simulate import iso
from traild.cli.args import CONFIG_HELP, DIRECTION_HELP, actions_of, add_since, number
from traild.cli.args import direction as _direction
from traild.cli.args import positive_float as _positive_float
from traild.cli.text import cell
from traild.config.settings import load
from traild.core.errors import StoreError, TraildError
from traild.core.messages import Direction, StageRecalculation, TradeRecord, TradeStatus
from traild.reporting.trades import build_report, outcomes


def register(sub: Any) -> None:
    p = sub.add_parser("migrate", help="bring the database schema to head")
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="retry an unreachable or read-only database for up to SECONDS (default 0)",
    )
    p.set_defaults(func=_migrate)

    p = sub.add_parser(
        "report",
        help="methods, outcomes and fallback reasons from the database",
        description="Trades opened since a time: open (managed), closed, pending (not filled "
        "yet) and unmanaged counts, methods, fallback reasons and outcomes by method.",
    )
    add_since(
        p,
        "Nd, Nh, Nm (e.g. 12h), an ISO date/time (UTC if no zone), or 'all' (default 7d)",
        default="7d",
    )
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object (SPEC §7)")
    p.add_argument(
        "--vs-backtest", metavar="DIR", help="compare with a backtest's summary.json (DIR or file)"
    )
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    from traild.cli.ticks_cmds import add_report_option

    add_report_option(p)
    p.set_defaults(func=_report)

    actions = actions_of(sub, "trade", "record trades for the daemon to adopt")
    p = actions.add_parser(
        "add",
        help="record a trade (the paper broker fills it at the next tick)",
        description="Record a pending trade; the daemon adopts it and (paper broker) fills it "
        "at the first tick after adoption: ask for a BUY, bid for a SELL.",
    )
    p.add_argument("--epic", required=True, help="IG epic, e.g. CS.D.EURUSD.MINI.IP")
    p.add_argument(
        "--direction", required=True, type=_direction, metavar="BUY|SELL", help=DIRECTION_HELP
    )
    p.add_argument(
        "--size", type=_positive_float, default=1.0, metavar="N", help="size (default 1)"
    )
    stop = p.add_mutually_exclusive_group(required=True)
    stop.add_argument(
        "--stop-pips", type=_positive_float, metavar="N", help="initial stop, pips from the fill"
    )
    stop.add_argument(
        "--stop",
        type=_positive_float,
        metavar="PRICE",
        help="initial stop as a price (below --limit for a BUY, above it for a SELL)",
    )
    limit = p.add_mutually_exclusive_group()
    limit.add_argument(
        "--limit-pips", type=_positive_float, metavar="N", help="limit, pips from the fill"
    )
    limit.add_argument("--limit", type=_positive_float, metavar="PRICE", help="limit as a price")
    p.add_argument(
        "--alert-id", type=_alert_id, metavar="N", help="the alert_history row it came from"
    )
    p.add_argument("--scalp", action="store_true", help="a scalp trade (scalp stage config)")
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.set_defaults(func=_trade_add)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"--wait wants a number of seconds >= 0, not {text!r}")
    return value


def _alert_id(text: str) -> int:
    return number(text, int, lambda v: v > 0, "not an alert id", "alert ids are positive")


# -- commands ---------------------------------------------------------------------------
def _migrate(args: argparse.Namespace) -> int:
    from traild.adapters.store import display_url, migrate_database

    url = load(args.config).database_url()
    revision = trio.run(partial(migrate_database, url, wait=args.wait))
    print(f"{display_url(url)}: schema at revision {revision} (head)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from traild.adapters.store import open_store

    if args.counterfactual:
        from traild.cli.ticks_cmds import report_counterfactual

        return report_counterfactual(args)
    if args.vs_backtest or args.html:
        from traild.cli.rollout_cmds import report_extras

        return report_extras(args)

    settings = load(args.config)

    async def read() -> tuple[list[TradeRecord], list[StageRecalculation], list[TradeRecord]]:
        async with open_store(settings.database_url()) as store:
            trades = await store.trades_since(args.since)
            older = [] if trades or args.since is None else await store.trades_since(None)
            return trades, await store.recalculations_since(args.since), older

    trades, recalcs, older = trio.run(read)
    if older:
        sys.stderr.write(f"traild: note: {_empty_window_note(args.since, older)}\n")
    report = build_report(trades, settings.instrument_table(), recalcs)
    report["journal"] = _journal(settings)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report, args.since)
    return 0


def _journal(settings: Any) -> dict[str, Any]:
    """The daemon's write-ahead journal for this database: records the database has not taken
    yet (a running daemon's are shipped within moments; after a stop in an outage, they wait
    for the next start)."""
    from traild.adapters.store import display_url
    from traild.adapters.store.journal import journal_dir, summary

    return summary(journal_dir(settings.state_path(), display_url(settings.database_url())))


def _empty_window_note(since: datetime, older: list[TradeRecord]) -> str:
    """Why a report is empty while the database is not: the window is on ``opened_at``, which
    for a replay is the feed's time (years ago for historical ticks)."""
    opened = [t.opened_at for t in older if t.opened_at is not None]
    latest = f", the latest opened at {iso(max(opened))}" if opened else ""
    return (
        f"no trade opened since {iso(since)}, but the database holds {len(older):,}{latest} "
        "(a replay records the feed's time): traild report --since all"
    )


def _trade_add(args: argparse.Namespace) -> int:
    from traild.adapters.store import WriteQueued, open_store

    settings = load(args.config)
    settings.instrument_table().resolve(args.epic)  # an unknown epic is an error, never a default
    check_sides(args.direction, args.stop, args.limit)
    trade = TradeRecord(
        deal_id=f"TRAILD-{uuid4().hex}",
        epic=args.epic,
        direction=args.direction,
        size=args.size,
        sl_price=args.stop,
        initial_sl_price=args.stop,
        limit_price=args.limit,
        status=TradeStatus.PENDING,  # the entry is not known until the (paper) broker fills it
        is_scalp_trade=args.scalp,
        alert_id=args.alert_id,
        stop_pips=args.stop_pips,
        limit_pips=args.limit_pips,
    )

    async def add() -> TradeRecord:
        url = settings.database_url()
        async with open_store(url, write_timeout=settings.database.write_timeout_s) as store:
            if args.alert_id is not None and await store.get_alert(args.alert_id) is None:
                raise TraildError(f"no alert_history row with id {args.alert_id}")
            try:
                return await store.add_trade(trade)
            except WriteQueued:
                raise StoreError(
                    "database unavailable (locked or unreachable): the trade may not have been "
                    "recorded; check with `traild report` before adding it again"
                ) from None

    print(trio.run(add).deal_id)
    return 0


def check_sides(direction: Direction, stop: float | None, limit: float | None) -> None:
    """Absolute stop and limit of a trade whose entry is not known yet: the stop must be on
    the losing side of the limit (below it for a BUY, above it for a SELL)."""
    if stop is None or limit is None:
        return
    if (limit - stop) * direction.sign <= 0:
        side = "below" if direction is Direction.BUY else "above"
        raise TraildError(
            f"--stop {stop:g} must be {side} --limit {limit:g} for a {direction.value}: the stop "
            "is on the losing side of the entry, the limit on the winning side"
        )


def print_report(report: dict[str, Any], since: datetime | None) -> None:
    window = "all time" if since is None else f"since {iso(since)}"
    extra = "".join(f", {report[k]} {k}" for k in ("pending", "unmanaged") if report.get(k))
    print(f"trades {window}: {report['open']} open, {report['closed']} closed{extra}")
    journal = report.get("journal") or {}
    if journal.get("pending"):
        print(
            f"journal: {journal['pending']} record(s) not yet in the database, the oldest "
            f"{journal['oldest_s']} s old (applied at the daemon's next start)"
        )
    methods = ", ".join(f"{k} {v}" for k, v in sorted(report["methods"].items())) or "none"
    print(f"methods: {methods}")
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(report["fallback_reasons"].items()))
    print(f"fallback reasons: {reasons or 'none'}")
    recalcs = report.get("recalculations")
    if recalcs:
        shifts = ", ".join(f"{k} {v}" for k, v in sorted(recalcs["shifts"].items()))
        print(
            f"recalculated in real time: {recalcs['trades']} trade(s), "
            f"{recalcs['total']} time(s): {shifts}"
        )
    by_method = outcomes(report)
    if by_method:
        print(f"\n{'method':<20} {'closed':>6} {'win %':>6} {'pips':>9} {'mean':>7}")
        for method, o in sorted(by_method.items()):
            n = int(o["closed"])
            print(
                f"{method:<20} {n:>6} {100 * o['wins'] / n:>6.1f} {o['pips']:>9.2f}"
                f" {o['pips'] / n:>7.2f}"
            )
    if report["trades"]:
        print(
            f"\n{'deal_id':<40} {'epic':<22} {'dir':<4} {'status':<9} {'entry':>10}"
            f" {'stop':>10} {'exit':>10} {'pnl':>8}  method"
        )
    for t in report["trades"]:
        method = t["method"] or "-"
        if t["fallback_reason"]:
            method += f" ({t['fallback_reason']})"
        print(
            f"{t['deal_id']:<40} {t['epic']:<22} {t['direction']:<4} {t['status']:<9}"
            f" {cell(t['entry_price']):>10} {cell(t['sl_price']):>10}"
            f" {cell(t['exit_price']):>10} {cell(t['pnl_pips']):>8}"
            f"  {method}"
        )
