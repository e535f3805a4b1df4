"""Live results against a backtest's prediction (``traild report --vs-backtest DIR``).

The backtest's ``summary.json`` (SPEC §8) has one entry per variant, each with its figures per
pair (``by_pair``): a pair's live trades are compared with that pair's backtest figures, the
live trades of all pairs (and a pair the backtest did not trade) with the pooled figures, and
each group says which (``backtest_scope``: ``pooled`` or the pair's symbol). Live dynamic
trades are compared with ``[rollout] backtest_dynamic_variant`` (default ``dynamic+lock``), live
fixed trades with ``backtest_fixed_variant`` (``fixed+lock``: the profit lock is account-wide
live). A
prediction is ``consistent`` when it lies inside the live interval; with few trades the interval
is wide and says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from traild.config.settings import Settings
from traild.core.calculator import DYNAMIC, FIXED
from traild.core.errors import DataError, InstrumentError
from traild.core.instruments import symbol_of
from traild.reporting.gate import evaluate
from traild.reporting.live import METRIC_NAMES, LiveTrade, metric_table
from traild.reporting.rollout import gate_policy

SUMMARY = "summary.json"
ALL_PAIRS = "all pairs"
POOLED = "pooled"  # a group compared with the backtest's figures over every pair
_PERCENT = {"win_rate", "protected_share"}  # backtest shares are 0..1, as live ones


def load_summary(path: str | Path) -> dict[str, Any]:
    """``DIR/summary.json`` (or the file itself); DataError when unreadable or not a summary."""
    target = Path(path)
    if target.is_dir():
        target = target / SUMMARY
    try:
        data = json.loads(target.read_text())
    except FileNotFoundError:
        raise DataError(f"no backtest summary at {target}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read {target}: {exc.__class__.__name__}") from None
    if not isinstance(data, dict) or not isinstance(data.get("variants"), dict):
        raise DataError(f"{target}: not a backtest summary (no 'variants' object)")
    return data


def compare(
    settings: Settings, trades: Sequence[LiveTrade], summary: Mapping[str, Any]
) -> dict[str, Any]:
    """Overall and per pair: each method's live metrics with intervals next to the prediction,
    the live gate, and the backtest's predicted improvement."""
    r = settings.rollout
    variants = summary["variants"]
    predicted = {
        DYNAMIC: _variant(variants, r.backtest_dynamic_variant),
        FIXED: _variant(variants, r.backtest_fixed_variant),
    }
    groups: dict[str, list[LiveTrade]] = {ALL_PAIRS: list(trades)}
    for t in trades:
        groups.setdefault(t.epic, []).append(t)
    out: dict[str, Any] = {}
    for name, rows in groups.items():
        scope, mine = (POOLED, predicted) if name == ALL_PAIRS else _of_pair(predicted, name)
        out[name] = {
            "backtest_scope": scope,
            "predicted_improvement_pct": _predicted_improvement(mine),
            **_group(settings, rows, mine),
        }
    return {
        "variants": {DYNAMIC: r.backtest_dynamic_variant, FIXED: r.backtest_fixed_variant},
        "predicted_improvement_pct": _predicted_improvement(predicted),
        "groups": out,
    }


def _of_pair(
    predicted: Mapping[str, Mapping[str, Any]], epic: str
) -> tuple[str, dict[str, Mapping[str, Any]]]:
    """The backtest's own figures for the pair of ``epic`` (``summary.json`` ``by_pair``,
    keyed by symbol) and ``"EURUSD"`` as the scope; the pooled figures and ``"pooled"`` when
    the backtest had no trade of that pair (or predates ``by_pair``)."""
    try:
        symbol = symbol_of(epic)
    except InstrumentError:
        symbol = epic.upper()
    mine = {}
    for method, variant in predicted.items():
        by_pair = variant.get("by_pair")
        found = by_pair.get(symbol) if isinstance(by_pair, Mapping) else None
        if not isinstance(found, Mapping) or not found.get("trades"):
            return POOLED, dict(predicted)
        mine[method] = found
    return symbol, mine


def _variant(variants: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    found = variants.get(name)
    if not isinstance(found, Mapping):
        have = ", ".join(sorted(variants)) or "none"
        raise DataError(f"backtest summary has no variant {name!r} (it has: {have})")
    return found


def _predicted_improvement(predicted: Mapping[str, Mapping[str, Any]]) -> float | None:
    e_d = predicted[DYNAMIC].get("expectancy_pips")
    e_f = predicted[FIXED].get("expectancy_pips")
    if not isinstance(e_d, int | float) or not isinstance(e_f, int | float) or e_f == 0:
        return None
    return round(100 * (e_d - e_f) / abs(e_f), 2)


def _group(
    settings: Settings, trades: Sequence[LiveTrade], predicted: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    policy = gate_policy(settings)
    out: dict[str, Any] = {}
    for method in (DYNAMIC, FIXED):
        mine = [t for t in trades if t.method == method]
        table = metric_table(mine, policy.boot)
        rows = {}
        for name in METRIC_NAMES:
            est = table[name]
            digits = 4 if name in _PERCENT else 2
            bt = predicted[method].get(name)
            bt = float(bt) if isinstance(bt, int | float) else None
            inside = None
            if bt is not None and est.low is not None and est.high is not None:
                inside = est.low <= bt <= est.high
            rows[name] = {**est.as_dict(digits), "backtest": bt, "consistent": inside}
        out[method] = {"trades": len(mine), "metrics": rows}
    out["gate"] = evaluate(trades, policy).as_dict()
    return out


def print_comparison(result: Mapping[str, Any]) -> None:
    """The comparison as terminal tables."""
    v = result["variants"]
    imp = result["predicted_improvement_pct"]
    print(f"live dynamic vs {v[DYNAMIC]}, live fixed vs {v[FIXED]}")
    print(f"backtest predicted expectancy improvement: {_cell(imp)} %")
    for name, group in result["groups"].items():
        print(f"\n== {name}: {scope_text(group['backtest_scope'])}")
        print(f"{'metric':<24} {'method':<19} {'live':>9} {'interval':>21} {'backtest':>9}  fits")
        for method in (DYNAMIC, FIXED):
            m = group[method]
            for metric, row in m["metrics"].items():
                interval = f"[{_cell(row['low'])}, {_cell(row['high'])}]"
                fits = {True: "yes", False: "NO", None: "-"}[row["consistent"]]
                print(
                    f"{metric:<24} {method:<19} {_cell(row['value']):>9} {interval:>21}"
                    f" {_cell(row['backtest']):>9}  {fits}"
                )
            print(f"{'closed trades':<24} {method:<19} {m['trades']:>9}")
        g = group["gate"]
        needed = g["trades_needed"]
        print(
            f"gate: {g['verdict']} — {g['why']}"
            + (f"; about {needed} more trades" if needed else "")
        )


def scope_text(scope: str) -> str:
    """Which backtest figures a group is compared with, for people."""
    if scope == POOLED:
        return "against the backtest's figures pooled over all its pairs"
    return f"against the backtest's {scope} figures"


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:g}"
