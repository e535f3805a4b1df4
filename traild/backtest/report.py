"""Backtest output: terminal table, ``trades.csv``, ``summary.json``, ``run.json``, ``report.md``.

Nothing here reads the clock, so the same seed writes the same files.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from traild.adapters.tickfiles import ms_to_datetime
from traild.backtest.claims import judge_claims
from traild.backtest.engine import BacktestResult, TradeRow
from traild.backtest.metrics import METRICS, by_kind, summarize
from traild.backtest.simulate import iso
from traild.backtest.variants import baseline_pairs
from traild.backtest.walkforward import verdict, walk_forward

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
    "recalculations",
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
    """trades.csv: one row per trade per variant, written column by column: each column is
    formatted in one pass for its type (no call per cell; timestamps once per distinct value),
    then the csv module joins and quotes the rows — the same text as formatting every cell
    with ``_csv_value``."""
    if rows:
        columns: list[Sequence[Any]] = list(zip(*map(attrgetter(*CSV_COLUMNS), rows), strict=True))
    else:
        columns = [() for _ in CSV_COLUMNS]
    cells = [_csv_column(name, values) for name, values in zip(CSV_COLUMNS, columns, strict=True)]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(zip(*cells, strict=True))


_ISO_RANGE = (-30_610_224_000_000, 253_402_300_799_999)  # years 1000-9999: four digits


def _stamps(values: Sequence[Any]) -> list[str]:
    """Epoch ms as ``iso`` writes them (``2014-05-01T00:01:02.123Z``), formatted by numpy in
    one call; anything unusual (a None, a year of other than four digits) value by value."""
    if values and all(type(v) is int for v in values):
        ms = np.array(values, dtype=np.int64)
        if _ISO_RANGE[0] <= ms.min() and ms.max() <= _ISO_RANGE[1]:
            text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
            return [t + "Z" for t in text.tolist()]
    stamps = {v: iso(ms_to_datetime(v)) or "" for v in dict.fromkeys(values)}
    return [stamps[v] for v in values]


def _csv_column(name: str, values: Sequence[Any]) -> Sequence[str]:
    """The cells of one column, exactly as ``_csv_value`` would write each value."""
    if name in ("entry_ts", "exit_ts"):
        return _stamps(values)
    if name in _PIPS:  # rounded to 0.01 pips (+ 0.0: no "-0.0")
        values = [None if v is None else round(v, 2) + 0.0 for v in values]
    types = set(map(type, values))
    if types <= {float}:
        return list(map(repr, values))
    if types <= {float, type(None)}:
        return ["" if v is None else repr(v) for v in values]
    if types <= {str}:
        return values
    if types <= {str, type(None)}:
        return ["" if v is None else v for v in values]
    if types <= {int}:
        return list(map(str, values))
    if types <= {bool}:
        return ["true" if v else "false" for v in values]
    return [_csv_value(v) for v in values]  # anything else: cell by cell


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


def _reasons(counts: dict[str, int]) -> str:
    return f": {_counts(counts)}" if counts else ""


def markdown(result: BacktestResult, summary_: dict[str, Any], info: dict[str, Any]) -> str:
    ticks = "\n".join(
        f"* `{t['path']}` as {t['epic']}: {t['ticks']:,} {t['unit']} {t['first']} .. {t['last']}"
        f" ({t['rejected']} rejected{_reasons(t['rejected_by'])}, {t['crossed']:,} crossed)"
        for t in info["ticks"]
    )
    e = info["entries"]
    entries = (
        f"signals from `{e['signals']}`"
        if "signals" in e
        else f"`{e['generator']}` test entries (a deliberately simple generator to judge "
        "trailing on trend entries: not trading advice)"
        if "generator" in e
        else f"{e['random']} random entries uniform over trading time, seed {e['seed']}, "
        + ", ".join(f"{k} {v:g}" for k, v in e["defaults"].items())
    )
    bars = (
        "\nBars are walked pessimistically (BUY open, low, high, close; SELL open, high, low,"
        " close); stops and take-profits inside a bar fill at their level"
        + (f"; ask = bid + {info['bar_spread_pips']:g} pips." if info["bar_spread_pips"] else ".")
        if any(t["kind"] == "bars" for t in info["ticks"])
        else ""
    )
    kinds = _bucket_table(
        {"variants": {name: {"by_kind": b} for name, b in info["by_kind"].items()}}, "by_kind"
    )
    definitions = "\n".join(f"* `{k}`" for k in METRICS)
    return f"""# traild backtest

{ticks}

Entries: {entries}. Lookahead for premature stop-outs: {info["lookahead_minutes"]} min.{bars}
Engine: {info["engine"]} ({info["paths"]["fast"]} trade runs on the vectorised kernel,
{info["paths"]["event"]} on the event-driven core).

## Results

{table(summary_, markdown=True)}

win% and protected% are shares of trades; exp/total/slip in pips; PF = profit factor;
capture% = sum(pnl) / sum(MFE) of winners; lock min = median minutes to the profit-lock trigger.

## By volatility regime (expectancy pips / win rate / trades)

{_bucket_table(summary_, "by_regime")}

## By market regime at entry (expectancy pips / win rate / trades)

ADX(14), ER(10) and ATR percentile of the M15 bars closed before the entry (SPEC §3).

{_bucket_table(summary_, "by_market_regime")}

## By session (expectancy pips / win rate / trades)

{_bucket_table(summary_, "by_session")}

{claims_section(summary_["claims"])}
{walk_forward_section(summary_.get("walk_forward"))}
## Scalp and regular trades (expectancy pips / win rate / trades)

{kinds}

## Methods and fallbacks

{
        chr(10).join(
            f"* {n}: methods {_counts(v['methods'])}; fallbacks {_counts(v['fallback_reasons'])}"
            for n, v in summary_["variants"].items()
        )
    }

## Charts

![equity](equity.png)
![pnl distribution](pnl_distribution.png)
![by regime](by_regime.png)
{"![dynamic minus fixed](dynamic_minus_fixed.png)" if pairs(result) else ""}

Metrics in `summary.json` (per variant, and per regime/session bucket):
{definitions}
"""


_VERDICT = {"met": "**met**", "not_met": "**not met**", "inconclusive": "inconclusive"}


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("relative", "share"):
        return f"{100 * value:+.1f} %" if unit == "relative" else f"{100 * value:.1f} %"
    return f"{value:g}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in counts.items()) or "none"


def claims_section(claims: dict[str, Any]) -> str:
    """The seed's success criteria: target, value per variant (pair), 95 % CI, verdict."""
    m = claims["method"]
    lines = [
        "## The seed's claims, judged",
        "",
        f"{int(100 * m['confidence'])} % intervals from {m['bootstrap_draws']} bootstrap draws "
        f"over whole days (unit: {m['resampling_unit']}; overlapping trades are not "
        "independent). "
        "met = the whole interval is on the target's side; not met = entirely on the other; "
        "inconclusive = it straddles the target, or fewer than "
        f"{m['min_trades']} trades or {m['min_days']} trading days "
        "(a lock violation is not met on any sample).",
        "",
        "| criterion | target | variant (vs baseline) | value | 95 % CI | trades | days "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in claims["criteria"].values():
        unit, target = c["unit"], f"{c['direction']} {_fmt(c['target'], c['unit'])}"
        for name, r in c["results"].items():
            ci = f"{_fmt(r['ci_low'], unit)} .. {_fmt(r['ci_high'], unit)}"
            lines.append(
                f"| {c['criterion']} | {target} | {name} | {_fmt(r['value'], unit)} | {ci} "
                f"| {r['trades']} | {r['days']} | {_VERDICT[r['verdict']]} |"
            )
    return "\n".join(lines) + "\n"


def walk_forward_section(wf: dict[str, Any] | None) -> str:
    if wf is None:
        return ""
    lines = [
        f"## Walk-forward ({wf['folds']} folds, scored by {wf['score']})",
        "",
        "| chosen on fold | evaluated on | variant | in-sample | out-of-sample | "
        f"{wf['baseline_variant']} | trades |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in wf["steps"]:
        lines.append(
            f"| {s['chosen_on']} | {s['evaluated_on']} | {s['chosen']} "
            f"| {_cell(s['in_sample_expectancy_pips'], '{:+.2f}')} "
            f"| {_cell(s['out_of_sample_expectancy_pips'], '{:+.2f}')} "
            f"| {_cell(s['baseline_expectancy_pips'], '{:+.2f}')} | {s['trades']} |"
        )
    d = wf["expectancy_difference_pips"]
    oos, base = wf["out_of_sample"], wf["baseline"]
    lines += [
        "",
        f"Out of sample: {oos['trades']} trades, expectancy "
        f"{_cell(oos['expectancy_pips'], '{:+.2f}')} pips against "
        f"{_cell(base['expectancy_pips'], '{:+.2f}')} for {wf['baseline_variant']} on the same "
        f"trades: difference {_cell(d['value'], '{:+.2f}')} pips, 95 % CI "
        f"{_cell(d['ci_low'], '{:+.2f}')} .. {_cell(d['ci_high'], '{:+.2f}')}. Only this "
        "figure may be called an improvement.",
        "",
        f"**Verdict: {verdict(wf)}.**",
    ]
    return "\n".join(lines) + "\n"


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
