"""``traild rollout status``, ``traild report --vs-backtest DIR`` and ``traild report --html FILE``.

They read the effective configuration (file + database overrides) and the closed trades from
the database, and recommend; none of them changes anything.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from traild.config.service import apply_overrides
from traild.config.settings import Settings, load
from traild.core.errors import DataError
from traild.core.messages import TradeRecord


def register(sub: Any) -> None:
    from traild.cli.core_cmds import CONFIG_HELP
    from traild.cli.store_cmds import _since

    rollout = sub.add_parser("rollout", help="where each pair stands in the rollout plan")
    actions = rollout.add_subparsers(dest="rollout_command", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("status", help="stage per pair and the 10 %% expectancy gate")
    p.add_argument(
        "--since",
        type=_since,
        default="all",
        metavar="AGE|DATE",
        help="closed trades since Nd, Nh, Nm, an ISO date/time, or 'all' (default all)",
    )
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_status)


@dataclass(frozen=True)
class LiveData:
    settings: Settings
    records: list[TradeRecord]


def read_live(config: str | None, since: datetime | None) -> LiveData:
    """The effective settings and the trades since ``since``, in one visit to the database."""
    from traild.adapters.store import open_store

    base = load(config)

    async def read() -> LiveData:
        async with open_store(base.database_url()) as store:
            _, overrides = await store.config_store().config_overrides()
            records = await store.trades_since(since)
        return LiveData(apply_overrides(base, overrides), records)

    return trio.run(read)


def _trades(data: LiveData) -> list[Any]:
    from traild.reporting.live import live_trades

    s = data.settings
    return live_trades(data.records, s.instrument_table(), s.trailing.profit_lock_trigger_pips)


def _status(args: argparse.Namespace) -> int:
    from traild.cli.ticks_cmds import paired_input
    from traild.reporting.rollout import rollout_status

    data = read_live(args.config, args.since)
    paired = paired_input(data.settings, data.records)
    status = rollout_status(data.settings, _trades(data), data.records, paired)
    if args.json:
        print(json.dumps(status))
    else:
        print_status(status)
    return 0


def print_status(status: dict[str, Any]) -> None:
    print(f"plan step: {status['plan_step']}")
    print(
        f"gate: dynamic expectancy >= fixed + {status['threshold_pct']:g} %, "
        f"{status['confidence']:.0%} interval, at least {status['min_trades']} trades per method"
    )
    print(
        f"\n{'pair':<22} {'stage':<28} {'dyn':>5} {'fix':>5} {'E dyn':>7} {'E fix':>7}"
        f" {'improv %':>9} {'gate':<12} recommendation"
    )
    for p in status["pairs"]:
        g = p["gate"]
        stage = p["stage"] + (f" ({p['fixed_reason']})" if p["fixed_reason"] else "")
        print(
            f"{p['pair']:<22} {stage:<28} {g['dynamic_trades']:>5} {g['fixed_trades']:>5}"
            f" {_cell(g['dynamic_expectancy_pips']):>7} {_cell(g['fixed_expectancy_pips']):>7}"
            f" {_cell(g['improvement_pct']['value']):>9} {g['verdict']:<12} {p['recommendation']}"
        )
    g = status["rollout_gate"]
    paired = status.get("gate_basis") == "paired"
    label = "before/after (secondary view)" if paired else "pairs on dynamic, pooled"
    print(f"\n{label}: {g['verdict']} — {g['why']}")
    if paired:
        from traild.cli.ticks_cmds import print_paired

        print_paired(status["paired_gate"], "rollout_gate")
    print(f"next: {status['recommendation']}")


def report_extras(args: argparse.Namespace) -> int:
    """``report --vs-backtest DIR`` and/or ``report --html FILE``."""
    from traild.reporting.vs_backtest import compare, load_summary, print_comparison

    summary = load_summary(args.vs_backtest) if args.vs_backtest else None  # fail before reading
    data = read_live(args.config, args.since)
    trades = _trades(data)
    comparison = compare(data.settings, trades, summary) if summary is not None else None
    if args.html:
        _write_html(args, data, trades, comparison)
    if comparison is not None:
        if args.json:
            print(json.dumps(comparison))
        else:
            print_comparison(comparison)
    return 0


def _write_html(
    args: argparse.Namespace, data: LiveData, trades: list[Any], comparison: Any
) -> None:
    from traild.cli.store_cmds import build_report
    from traild.cli.ticks_cmds import html_extras
    from traild.reporting.html import render
    from traild.reporting.rollout import rollout_status

    s = data.settings
    report = build_report(data.records, s.instrument_table())
    paired, extra = html_extras(s, data.records)
    status = rollout_status(s, trades, data.records, paired)
    page = render(report, status, trades, comparison, args.since, extra)
    target = Path(args.html)
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot write {target}: {exc.strerror or exc}") from None
    if not args.vs_backtest:
        print(f"wrote {target} ({len(page)} bytes)")


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:g}"
