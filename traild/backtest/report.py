"""Backtest output: ``summary.json``, ``run.json`` and every file of ``--out`` (``write_outputs``):
``trades.csv`` (``backtest.trades_csv``), ``report.md`` and the terminal table
(``backtest.report_md``), the charts (``backtest.charts``).

Nothing here reads the clock, so the same seed writes the same files.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from traild.adapters.tickfiles import ms_to_datetime
from traild.backtest.claims import judge_claims
from traild.backtest.engine import BacktestResult
from traild.backtest.metrics import by_kind, summarize
from traild.backtest.report_md import claims_section, markdown, table, walk_forward_section
from traild.backtest.simulate import iso
from traild.backtest.trades_csv import CSV_COLUMNS, write_trades
from traild.backtest.variants import baseline_pairs
from traild.backtest.walkforward import walk_forward

__all__ = [
    "CSV_COLUMNS",
    "claims_section",
    "markdown",
    "pairs",
    "run_info",
    "summary",
    "table",
    "walk_forward_section",
    "write_outputs",
    "write_trades",
]


def summary(result: BacktestResult) -> dict[str, Any]:
    """SPEC §8's summary: per-variant metrics, the claims judged, and walk-forward if asked."""
    names = [v.name for v in result.variants]
    out = summarize(result.rows, names)
    dynamic = {v.name for v in result.variants if v.dynamic}
    out["claims"] = judge_claims(
        result.rows, names, pairs(result), {v.name for v in result.variants if v.lock}
    )
    k = result.request.walk_forward
    if k is not None:
        out["walk_forward"] = walk_forward(result.rows, [n for n in names if n in dynamic], k)
    return out


def pairs(result: BacktestResult) -> list[tuple[str, str]]:
    return baseline_pairs(result.variants)


def run_info(result: BacktestResult) -> dict[str, Any]:
    """Everything needed to reproduce and judge the run (``run.json``)."""
    req = result.request
    paths = Counter(r.path for r in result.rows)
    return {
        "entries": (
            {"signals": req.signals}
            if req.signals is not None
            else {"generator": req.entries, "test_entries_not_trading_advice": True}
            if req.entries is not None
            else {"random": req.random, "seed": req.seed, "defaults": asdict(req.defaults)}
        ),
        "bar_spread_pips": req.bar_spread_pips if req.bars and not req.ask_bars else None,
        "ticks": [
            {
                "path": str(m.source.path),
                "epic": m.epic,
                "kind": m.kind,
                "ticks": len(m) if m.entry_points is None else int(m.entry_points.size),
                "unit": "ticks" if m.entry_points is None else "M1 bars",
                "first": iso(ms_to_datetime(int(m.ts_ms[0]))),
                "last": iso(ms_to_datetime(int(m.ts_ms[-1]))),
                "rejected": m.rejected,
                "rejected_by": dict(sorted(m.rejected_by.items())),
                "crossed": m.crossed,
            }
            for m in result.markets
        ],
        "variants": [
            {
                "name": v.name,
                "dynamic": v.dynamic,
                "profit_lock": v.lock,
                "overrides": dict(v.overrides),
            }
            for v in result.variants
        ],
        "lookahead_minutes": req.lookahead_minutes,
        "engine": req.engine,
        "paths": {"fast": paths.get("fast", 0), "event": paths.get("event", 0)},
        "by_kind": by_kind(result.rows, [v.name for v in result.variants]),
    }


def write_outputs(
    result: BacktestResult,
    out: Path,
    charts: bool = True,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write every output file into ``out``; returns the summary. ``note`` hears a line
    before each slow step (the claims' bootstrap, trades.csv, the charts)."""
    say = note or (lambda _: None)
    out.mkdir(parents=True, exist_ok=True)
    say("judging the claims (bootstrap over days)")
    summary_ = summary(result)
    info = run_info(result)
    say(f"writing trades.csv ({len(result.rows):,} rows)")
    write_trades(result.rows, out / "trades.csv")
    (out / "summary.json").write_text(
        json.dumps(summary_, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    (out / "run.json").write_text(
        json.dumps(info, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    (out / "report.md").write_text(markdown(result, summary_, info), encoding="utf-8")
    if charts:
        say("drawing the charts")
        from traild.backtest.charts import write_charts

        write_charts(result.rows, [v.name for v in result.variants], summary_, out, pairs(result))
    return summary_
