"""The HTML report's counterfactual section: per pair, live against each replayed method and
live minus model; then the paired gate (``report --html`` when ticks were recorded)."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from traild.reporting.html import _interval, _section, _table


def counterfactual_section(report: Mapping[str, Any]) -> str:
    """``report``: as ``reporting.assemble.counterfactual_report`` builds it (with the gate)."""
    names = list(report["variants"])
    rows = [
        (epic, p["trades"], p["live_pips"], p["model_pips"],
         *(p["variants"][v] for v in names), p["live_minus_model_pips"])
        for epic, p in report["pairs"].items()
    ]  # fmt: skip
    head = ("pair", "trades", "live", "model", *names, "live − model")
    gate = report["paired_gate"]
    gate_rows = [
        (name, g["trades"], g["trading_days"], g["dynamic_expectancy_pips"],
         g["fixed_expectancy_pips"], g["difference_pips"]["value"], _interval(g["difference_pips"]),
         g["margin_pips"]["value"], _interval(g["margin_pips"]), g["verdict"], g["trades_needed"])
        for name, g in [("all pairs", gate["pooled"]), *gate["pairs"].items()]
    ]  # fmt: skip
    gate_head = (
        "pairs", "trades", "trading days", "E dynamic+lock", "E fixed+lock",
        "difference", "interval", "margin", "interval", "verdict", "trades needed",
    )  # fmt: skip
    skipped = ", ".join(f"{k} {v}" for k, v in report["skipped"].items()) or "none"
    pooled = gate["pooled"]
    return _section(
        "counterfactuals",
        "Counterfactuals: the same trades, other methods",
        f"<p class=note>{report['replayed']} closed trades replayed over their recorded ticks "
        f"(mean pips per trade); not replayed: {escape(skipped)}. <i>model</i> replays the "
        "stages each trade trailed on; live − model is what execution added or lost.</p>",
        _table(head, rows),
        f"<p>Paired gate (dynamic+lock minus fixed+lock on the same trades, margin over fixed "
        f'+ {gate["threshold_pct"]:g} %): <span class="{escape(pooled["verdict"])}">'
        f"{escape(pooled['verdict'])}</span> — {escape(pooled['why'])}.</p>",
        _table(gate_head, gate_rows),
    )
