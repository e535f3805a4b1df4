"""Backtest output: terminal table, ``trades.csv``, ``summary.json``, ``run.json``, ``report.md``.

Nothing here reads the clock, so the same seed writes the same files.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from operator import attrgetter
from pathlib import Path
from typing import Any

from traild.adapters.tickfiles import ms_to_datetime
from traild.backtest.engine import BacktestResult, TradeRow
from traild.backtest.metrics import METRICS, by_kind, summarize
from traild.simulation import iso

CSV_COLUMNS = (
    "variant",
    "trade_id",
    "epic",
    "direction",
    "is_scalp",
    "entry_ts",
    "entry",
    "initial_stop",
    "limit",
    "method",
    "fallback_reason",
    "atr_pips",
    "volatility_regime",
    "session",
    "market_regime",
    "exit_ts",
    "exit_price",
    "exit_reason",
    "exit_stop",
    "gap",
    "pnl_pips",
    "mfe_pips",
    "slippage_pips",
    "minutes_to_lock",
    "lock_violation",
    "premature",
    "amendments",
    "path",
)
# (header, summary key, format) of the terminal / markdown table
_TABLE = (
    ("trades", "trades", "{:d}"),
    ("win%", "win_rate", "pct"),
    ("exp", "expectancy_pips", "{:+.2f}"),
    ("total", "total_pips", "{:+.1f}"),
    ("PF", "profit_factor", "{:.2f}"),
    ("capture%", "profit_capture_pct", "{:.1f}"),
    ("premature", "premature_stopouts", "{:d}"),
    ("protected%", "protected_share", "pct"),
    ("lock min", "median_minutes_to_lock", "{:.1f}"),
    ("viol", "lock_violations", "{:d}"),
    ("slip loss", "lock_slippage_losses", "{:d}"),
    ("gaps", "gap_fills", "{:d}"),
    ("slip", "mean_slippage_pips", "{:.2f}"),
)


def summary(result: BacktestResult) -> dict[str, Any]:
    return summarize(result.rows, [v.name for v in result.variants])


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "pct":
        return f"{100 * value:.1f}"
    return fmt.format(value)


def table(summary_: dict[str, Any], markdown: bool = False) -> str:
    """One row per variant with the headline metrics."""
    rows = [
        [name] + [_cell(m[key], fmt) for _, key, fmt in _TABLE]
        for name, m in summary_["variants"].items()
    ]
    header = ["variant"] + [h for h, _, _ in _TABLE]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*r) for r in [header, *rows])


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


_PIPS = frozenset(("pnl_pips", "mfe_pips", "slippage_pips", "minutes_to_lock", "atr_pips"))


def write_trades(rows: Sequence[TradeRow], path: Path) -> None:
    """trades.csv: one row per trade per variant; each timestamp is formatted once (the
    variants share their entries) and the columns are read in one call per row."""
    get = attrgetter(*CSV_COLUMNS)
    stamps_at = [i for i, c in enumerate(CSV_COLUMNS) if c in ("entry_ts", "exit_ts")]
    pips_at = [i for i, c in enumerate(CSV_COLUMNS) if c in _PIPS]
    stamps: dict[int, str | None] = {}

    def csv_row(r: TradeRow) -> list[str]:
        values = list(get(r))
        for i in stamps_at:
            ms = values[i]
            if ms not in stamps:
                stamps[ms] = iso(ms_to_datetime(ms))
            values[i] = stamps[ms]
        for i in pips_at:
            if values[i] is not None:
                values[i] = round(values[i], 2) + 0.0
        return [_csv_value(v) for v in values]

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_row(r) for r in rows)


def run_info(result: BacktestResult) -> dict[str, Any]:
    """Everything needed to reproduce and judge the run (``run.json``)."""
    req = result.request
    paths = Counter(r.path for r in result.rows)
    return {
        "entries": (
            {"signals": req.signals}
            if req.signals is not None
            else {"random": req.random, "seed": req.seed, "defaults": asdict(req.defaults)}
        ),
        "ticks": [
            {
                "path": str(m.source.path),
                "epic": m.epic,
                "ticks": len(m),
                "first": iso(ms_to_datetime(int(m.ts_ms[0]))),
                "last": iso(ms_to_datetime(int(m.ts_ms[-1]))),
                "rejected": m.rejected,
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


def _bucket_table(summary_: dict[str, Any], field: str) -> str:
    names = list(summary_["variants"])
    buckets: list[str] = []
    for v in summary_["variants"].values():
        buckets += [b for b in v[field] if b not in buckets]
    lines = [
        "| " + " | ".join([field.removeprefix("by_"), *names]) + " |",
        "|" + "---|" * (len(names) + 1),
    ]
    for b in buckets:
        cells = []
        for name in names:
            m = summary_["variants"][name][field].get(b)
            cells.append(
                "-"
                if m is None
                else f"{_cell(m['expectancy_pips'], '{:+.2f}')} / {_cell(m['win_rate'], 'pct')}%"
                f" / {m['trades']}"
            )
        lines.append("| " + " | ".join([b, *cells]) + " |")
    return "\n".join(lines)


def markdown(result: BacktestResult, summary_: dict[str, Any], info: dict[str, Any]) -> str:
    ticks = "\n".join(
        f"* `{t['path']}` as {t['epic']}: {t['ticks']:,} ticks {t['first']} .. {t['last']}"
        f" ({t['rejected']} rejected, {t['crossed']:,} crossed)"
        for t in info["ticks"]
    )
    e = info["entries"]
    entries = (
        f"signals from `{e['signals']}`"
        if "signals" in e
        else f"{e['random']} random entries, seed {e['seed']}, defaults {e['defaults']}"
    )
    kinds = _bucket_table(
        {"variants": {name: {"by_kind": b} for name, b in info["by_kind"].items()}}, "by_kind"
    )
    definitions = "\n".join(f"* `{k}`" for k in METRICS)
    return f"""# traild backtest

{ticks}

Entries: {entries}. Lookahead for premature stop-outs: {info["lookahead_minutes"]} min.
Engine: {info["engine"]} ({info["paths"]["fast"]} trade runs on the vectorised kernel,
{info["paths"]["event"]} on the event-driven core).

## Results

{table(summary_, markdown=True)}

win% and protected% are shares of trades; exp/total/slip in pips; PF = profit factor;
capture% = sum(pnl) / sum(MFE) of winners; lock min = median minutes to the profit-lock trigger.

## By volatility regime (expectancy pips / win rate / trades)

{_bucket_table(summary_, "by_regime")}

## By session (expectancy pips / win rate / trades)

{_bucket_table(summary_, "by_session")}

## Scalp and regular trades (expectancy pips / win rate / trades)

{kinds}

## Methods and fallbacks

{
        chr(10).join(
            f"* {n}: methods {v['methods']}, fallbacks {v['fallback_reasons']}"
            for n, v in summary_["variants"].items()
        )
    }

## Charts

![equity](equity.png)
![pnl distribution](pnl_distribution.png)
![by regime](by_regime.png)

Metrics in `summary.json` (per variant, and per regime/session bucket):
{definitions}
"""


def write_outputs(result: BacktestResult, out: Path, charts: bool = True) -> dict[str, Any]:
    """Write every output file into ``out``; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary_ = summary(result)
    info = run_info(result)
    write_trades(result.rows, out / "trades.csv")
    (out / "summary.json").write_text(
        json.dumps(summary_, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    (out / "run.json").write_text(
        json.dumps(info, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    (out / "report.md").write_text(markdown(result, summary_, info), encoding="utf-8")
    if charts:
        from traild.backtest.charts import write_charts

        write_charts(result.rows, [v.name for v in result.variants], summary_, out)
    return summary_
