"""``traild report --html FILE``: one self-contained page (inline CSS and SVG, no scripts, no
network) with the method distribution, fallback reasons, dynamic vs fixed outcomes per pair,
the equity curves, the rollout status and, when given, the comparison with a backtest."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from html import escape
from typing import Any

from traild.backtest.chartdata import equity_curves
from traild.core.calculator import DYNAMIC, FIXED
from traild.core.instruments import symbol_of
from traild.reporting.live import LiveTrade, expectancy, win_rate
from traild.reporting.svg import bar_chart, interval_chart, line_chart

SECTIONS = ("methods", "fallback-reasons", "outcomes", "equity", "rollout")
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1180px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:2em}table{border-collapse:collapse;margin:.6em 0;max-width:100%}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}td{white-space:nowrap}
table.wide{font-size:.9em}td.text{text-align:left;white-space:normal;min-width:16em}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}
.met{color:#176e2a;font-weight:bold}.not_met{color:#b00020;font-weight:bold}
.undecidable{color:#8a6d00}.note{color:#555;font-size:.9em}svg{max-width:100%;height:auto}
"""


def render(
    report: Mapping[str, Any],
    status: Mapping[str, Any],
    trades: Sequence[LiveTrade],
    comparison: Mapping[str, Any] | None,
    since: datetime | None,
    extra: Sequence[str] = (),  # further sections (the counterfactuals), before the backtest
) -> str:
    window = "all time" if since is None else f"since {since:%Y-%m-%d %H:%M} UTC"
    body = [
        f"<h1>traild report</h1><p class=note>{escape(window)}; generated "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {report['open']} open, "
        f"{report['closed']} closed trades.</p>",
        _methods(report),
        _reasons(report),
        _outcomes(trades),
        _equity(trades),
        _rollout(status),
        *extra,
    ]
    if comparison is not None:
        body.append(_backtest(comparison))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>traild report</title>"
        f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )


def _section(ident: str, title: str, *content: str) -> str:
    return f'<section id="{ident}"><h2>{escape(title)}</h2>' + "".join(content) + "</section>"


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], wide: bool = False) -> str:
    """A table; ``wide``: many columns, in a smaller font (it must fit a 1280 px window)."""
    out = [f"<table{' class=wide' if wide else ''}><tr>"]
    out += [f"<th>{escape(h)}</th>" for h in head] + ["</tr>"]
    for row in rows:
        cells = (
            f"<td class=text>{escape(c)}</td>"
            if isinstance(c, _Text)
            else f"<td>{_html_cell(c)}</td>"
            for c in row
        )
        out.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        out.append(f'<tr><td colspan="{len(head)}">no data</td></tr>')
    return "".join(out) + "</table>"


def _html_cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}" if math.isfinite(value) else "–"
    return escape(str(value))


def _methods(report: Mapping[str, Any]) -> str:
    counts = sorted(report["methods"].items())
    chart = bar_chart("trades per calculation method", [k for k, _ in counts],
                      {"trades": [float(v) for _, v in counts]})  # fmt: skip
    return _section("methods", "Calculation method distribution",
                    _table(("method", "trades"), counts), chart)  # fmt: skip


def _reasons(report: Mapping[str, Any]) -> str:
    counts = sorted(report["fallback_reasons"].items(), key=lambda kv: (-kv[1], kv[0]))
    chart = bar_chart("fixed trades per fallback reason", [k for k, _ in counts],
                      {"trades": [float(v) for _, v in counts]})  # fmt: skip
    return _section("fallback-reasons", "Fallback reasons",
                    _table(("reason", "trades"), counts), chart)  # fmt: skip


def _outcomes(trades: Sequence[LiveTrade]) -> str:
    pairs = sorted({t.epic for t in trades})
    rows = []
    series: dict[str, list[float]] = {DYNAMIC: [], FIXED: []}
    for epic in pairs:
        for method in (DYNAMIC, FIXED):
            mine = [t for t in trades if t.epic == epic and t.method == method]
            e = expectancy(mine)
            series[method].append(math.nan if e is None else e)
            w = win_rate(mine)
            total = math.fsum(t.pnl_pips for t in mine)
            rows.append((epic, method, len(mine), None if w is None else 100 * w, e, total))
    chart = bar_chart("expectancy (pips per trade) by pair", [symbol_of(p) for p in pairs], series)
    head = ("pair", "method", "closed", "win %", "expectancy (pips)", "total pips")
    return _section("outcomes", "Dynamic vs fixed outcomes per pair", _table(head, rows), chart)


def _equity(trades: Sequence[LiveTrade]) -> str:
    curves = equity_curves(trades, (DYNAMIC, FIXED), _method, _day, _pnl)
    series = {method: curve for method, (_, curve) in curves.items()}
    return _section(
        "equity", "Cumulative pips by method",
        line_chart("cumulative pips", series, "closed trades in order"),
        '<p class=note>Closed trades of each method in order of their closing day.</p>',
    )  # fmt: skip


def _method(t: LiveTrade) -> str:
    return t.method


def _day(t: LiveTrade) -> date:
    return t.day


def _pnl(t: LiveTrade) -> float:
    return t.pnl_pips


def _rollout(status: Mapping[str, Any]) -> str:
    rows = []
    for p in status["pairs"]:
        g = p["gate"]
        stage = p["stage"] + (f" ({p['fixed_reason']})" if p["fixed_reason"] else "")
        interval = g["improvement_pct"]
        c = p["calculations"]
        rows.append(
            (p["symbol"], stage, f"{c['dynamic']} / {c['trades']}",
             f"{g['dynamic_trades']} / {g['fixed_trades']}",
             f"{_pips(g['dynamic_expectancy_pips'])} / {_pips(g['fixed_expectancy_pips'])}",
             _improvement(interval), g["verdict"], g["trades_needed"],
             _Text(p["recommendation"]))
        )  # fmt: skip
    head = ("pair", "stage", "dynamic stages / adopted", "closed dynamic / fixed",
            "expectancy dynamic / fixed (pips)", "improvement % [interval]", "gate",
            "trades needed", "recommendation")  # fmt: skip
    g = status["rollout_gate"]
    judged = [
        (symbol_of(p["pair"]), i["value"], i["low"], i["high"])
        for p in status["pairs"]
        for i in [p["gate"]["improvement_pct"]]
        if None not in (i["value"], i["low"], i["high"])
    ]
    chart = interval_chart(
        "expectancy improvement, dynamic vs fixed (%)", judged, status["threshold_pct"]
    )
    return _section(
        "rollout",
        "Rollout status",
        f"<p>Plan step: <b>{escape(status['plan_step'])}</b>. Gate: dynamic expectancy at least "
        f"{status['threshold_pct']:g} % above fixed ({status['confidence']:.0%} interval, "
        f"at least {status['min_trades']} closed trades per method).</p>",
        _table(head, rows, wide=True),
        f'<p>Pairs on dynamic, pooled: <span class="{escape(g["verdict"])}">'
        f"{escape(g['verdict'])}</span> — {escape(g['why'])}.</p>",
        f"<p>Next: {escape(status['recommendation'])}</p>",
        chart,
    )


class _Text(str):
    """A table cell of prose: left-aligned, wrapped."""


def _pips(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _improvement(item: Mapping[str, Any]) -> str:
    value = "–" if item["value"] is None else f"{item['value']:,.1f}"
    return value if item["low"] is None else f"{value} {_interval(item)}"


def _interval(item: Mapping[str, Any]) -> str:
    if item["low"] is None or item["high"] is None:
        return "–"
    return f"[{item['low']:,.4g}, {item['high']:,.4g}]"


def _backtest(comparison: Mapping[str, Any]) -> str:
    rows = []
    for name, group in comparison["groups"].items():
        scope = group.get("backtest_scope", "pooled")
        scope = "pooled over all pairs" if scope == "pooled" else f"{scope} only"
        for method in (DYNAMIC, FIXED):
            for metric, row in group[method]["metrics"].items():
                fits = {True: "yes", False: "no", None: "–"}[row["consistent"]]
                rows.append((name, method, metric, row["value"], _interval(row),
                             row["backtest"], scope, fits))  # fmt: skip
    head = ("live pairs", "method", "metric", "live", "interval", "backtest", "backtest figures",
            "inside interval")  # fmt: skip
    v = comparison["variants"]
    imp = comparison["predicted_improvement_pct"]
    return _section(
        "backtest",
        "Live against the backtest",
        f"<p>Live dynamic trades against <b>{escape(v[DYNAMIC])}</b>, live fixed trades against "
        f"<b>{escape(v[FIXED])}</b>; the backtest predicted "
        f"{'–' if imp is None else f'{imp:g} %'} expectancy improvement.</p>",
        _table(head, rows),
    )
