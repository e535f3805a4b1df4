"""The text forms of a backtest's results: the terminal table and ``report.md`` (with the
claims and walk-forward sections)."""

from __future__ import annotations

from typing import Any

from traild.backtest.engine import BacktestResult
from traild.backtest.metrics import METRICS
from traild.backtest.variants import baseline_pairs
from traild.backtest.walkforward import verdict

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
{"![dynamic minus fixed](dynamic_minus_fixed.png)" if baseline_pairs(result.variants) else ""}

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
