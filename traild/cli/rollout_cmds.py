"""``traild rollout status``, ``traild report --vs-backtest DIR`` and ``traild report --html FILE``.

They read the effective configuration (file + database overrides) and the trades from the
database (``read_live``), have ``traild.reporting`` build the report, and print or write it;
they recommend, and none of them changes anything.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from traild.cli.args import CONFIG_HELP, actions_of, add_since
from traild.cli.text import cell
from traild.config.service import apply_overrides
from traild.config.settings import Settings, load
from traild.core.errors import DataError
from traild.core.messages import TradeRecord


def register(sub: Any) -> None:
    actions = actions_of(sub, "rollout", "where each pair stands in the rollout plan")
    p = actions.add_parser("status", help="stage per pair and the 10 %% expectancy gate")
    add_since(
        p,
        "closed trades since Nd, Nh, Nm, an ISO date/time, or 'all' (default all)",
        default="all",
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


def _status(args: argparse.Namespace) -> int:
    from traild.reporting.assemble import rollout_report

    data = read_live(args.config, args.since)
    status = rollout_report(data.settings, data.records)
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
            f" {cell(g['dynamic_expectancy_pips']):>7} {cell(g['fixed_expectancy_pips']):>7}"
            f" {cell(g['improvement_pct']['value']):>9} {g['verdict']:<12} {p['recommendation']}"
        )
    g = status["rollout_gate"]
    paired = status.get("gate_basis") == "paired"
    label = "before/after (secondary view)" if paired else "pairs on dynamic, pooled"
    print(f"\n{label}: {g['verdict']} — {g['why']}")
    if paired:
        print_paired(status["paired_gate"], "rollout_gate")
    print(f"next: {status['recommendation']}")


def print_paired(gate: dict[str, Any], which: str = "pooled") -> None:
    """The paired gate's verdict (``which``: ``pooled`` over every pair, or ``rollout_gate``:
    over the pairs on dynamic) and, per pair, one line."""
    g = gate[which]
    d, m = g["difference_pips"], g["margin_pips"]
    over = g.get("over", "every pair")
    over = over if isinstance(over, str) else ", ".join(over)
    print(
        f"\npaired gate ({over}: dynamic+lock minus fixed+lock on the same {g['trades']} "
        f"trades, {g['trading_days']} trading days): {g['verdict']} — {g['why']}"
    )
    if d["value"] is not None:
        print(
            f"  dynamic {g['dynamic_expectancy_pips']:+.2f},"
            f" fixed {g['fixed_expectancy_pips']:+.2f} pips/trade;"
            f" difference {d['value']:+.2f} [{_pips(d['low'])}, {_pips(d['high'])}];"
            f" margin over fixed + {gate['threshold_pct']:g} %: {m['value']:+.2f}"
            f" [{_pips(m['low'])}, {_pips(m['high'])}]"
        )
    if g["verdict"] == "undecidable" and g["trades_needed"] is not None:
        print(
            f"  a verdict needs about {g['trades_needed']} more trades "
            f"(~{g['days_needed']} trading days at this pace)"
        )
    for epic, p in gate["pairs"].items():
        print(
            f"  {epic:<22} {p['trades']:>5} trades {p['trading_days']:>4} days"
            f"  difference {_pips(p['difference_pips']['value'])}"
            f"  margin {_pips(p['margin_pips']['value'])}  {p['verdict']}"
        )


def _pips(value: float | None) -> str:
    return cell(value, "+.2f")


def report_extras(args: argparse.Namespace) -> int:
    """``report --vs-backtest DIR`` and/or ``report --html FILE``."""
    from traild.reporting.assemble import html_page, live_trades_of
    from traild.reporting.vs_backtest import compare, load_summary, print_comparison

    summary = load_summary(args.vs_backtest) if args.vs_backtest else None  # fail before reading
    data = read_live(args.config, args.since)
    trades = live_trades_of(data.settings, data.records)
    comparison = compare(data.settings, trades, summary) if summary is not None else None
    if args.html:
        page = html_page(data.settings, data.records, trades, comparison, args.since)
        target = Path(args.html)
        try:
            target.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise DataError(f"cannot write {target}: {exc.strerror or exc}") from None
        if not args.vs_backtest:
            print(f"wrote {target} ({len(page)} bytes)")
    if comparison is not None:
        if args.json:
            print(json.dumps(comparison))
        else:
            print_comparison(comparison)
    return 0
