"""Walk-forward tuning (``--walk-forward K``, SPEC §8): choose on fold i, evaluate on fold i+1.

The trades, in entry-time order, are cut into K consecutive folds of (nearly) equal size. On
each fold i < K-1 every dynamic variant (``dynamic+lock`` and each ``--grid`` point) is scored
by its expectancy; the best is then run, unchanged, on fold i+1 -- never on the fold it was
chosen on. The out-of-sample result is those fold-(i+1) trades together, beside ``fixed+lock``
on exactly the same trades, with a paired day-bootstrap interval of the expectancy difference.
It is the only figure of the backtest that may be called an improvement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from traild.backtest.claims import expectancy_difference
from traild.backtest.metrics import metrics, number
from traild.backtest.rows import TradeRow
from traild.backtest.variants import FIXED_LOCK
from traild.core.errors import DataError

SCORE = "expectancy_pips"


@dataclass(frozen=True, slots=True)
class Step:
    chosen_on: int
    evaluated_on: int
    chosen: str
    in_sample: float
    scored_ids: frozenset[int]  # the trades the choice was made on
    evaluated_ids: frozenset[int]  # the trades it was then evaluated on


def folds_of(rows: Sequence[TradeRow], k: int) -> list[list[int]]:
    """Trade ids in K consecutive, nearly equal folds by entry time."""
    first: dict[int, int] = {}
    for r in rows:
        first.setdefault(r.trade_id, r.entry_ts)
    ordered = sorted(first, key=lambda t: (first[t], t))
    if k < 2 or len(ordered) < k:
        raise DataError(f"--walk-forward {k}: needs K >= 2 and at least K trades")
    bounds = np.linspace(0, len(ordered), k + 1).round().astype(int)
    return [ordered[bounds[i] : bounds[i + 1]] for i in range(k)]


def _expectancy(rows: Sequence[TradeRow]) -> float:
    return float(np.mean([r.pnl_pips for r in rows])) if rows else float("-inf")


def choose(
    rows: Sequence[TradeRow], candidates: Sequence[str], folds: list[list[int]]
) -> list[Step]:
    """The best candidate of each fold i, to be evaluated on fold i+1."""
    index: dict[tuple[str, int], TradeRow] = {(r.variant, r.trade_id): r for r in rows}
    steps = []
    for i in range(len(folds) - 1):
        scored = {name: _expectancy([index[(name, t)] for t in folds[i]]) for name in candidates}
        best = max(candidates, key=lambda name: (scored[name], -candidates.index(name)))
        steps.append(
            Step(i, i + 1, best, scored[best], frozenset(folds[i]), frozenset(folds[i + 1]))
        )
    return steps


def walk_forward(rows: Sequence[TradeRow], candidates: Sequence[str], k: int) -> dict[str, Any]:
    """``summary.json["walk_forward"]``."""
    if not candidates:
        raise DataError("--walk-forward needs dynamic variants to choose from (--grid ...)")
    folds = folds_of(rows, k)
    steps = choose(rows, candidates, folds)
    index = {(r.variant, r.trade_id): r for r in rows}
    oos = [index[(s.chosen, t)] for s in steps for t in sorted(s.evaluated_ids)]
    base = [index[(FIXED_LOCK, r.trade_id)] for r in oos]
    value, low, high = expectancy_difference(oos, base)
    return {
        "folds": k,
        "score": SCORE,
        "baseline_variant": FIXED_LOCK,
        "steps": [
            {
                "chosen_on": s.chosen_on,
                "evaluated_on": s.evaluated_on,
                "chosen": s.chosen,
                "in_sample_expectancy_pips": number(s.in_sample, 2),
                "out_of_sample_expectancy_pips": number(
                    _expectancy([index[(s.chosen, t)] for t in s.evaluated_ids]), 2
                ),
                "baseline_expectancy_pips": number(
                    _expectancy([index[(FIXED_LOCK, t)] for t in s.evaluated_ids]), 2
                ),
                "trades": len(s.evaluated_ids),
            }
            for s in steps
        ],
        "out_of_sample": metrics(oos),
        "baseline": metrics(base),
        "expectancy_difference_pips": {
            "value": number(value, 2),
            "ci_low": number(low, 2),
            "ci_high": number(high, 2),
        },
    }


IMPROVED, WORSE, INCONCLUSIVE = "improved", "worse", "inconclusive"


def verdict(wf: dict[str, Any]) -> str:
    """What the out-of-sample difference says: ``improved`` when its whole interval is above
    zero, ``worse`` when below, else ``inconclusive`` (also without an interval)."""
    d = wf["expectancy_difference_pips"]
    if d["ci_low"] is not None and d["ci_low"] > 0:
        return IMPROVED
    if d["ci_high"] is not None and d["ci_high"] < 0:
        return WORSE
    return INCONCLUSIVE


def verdict_line(wf: dict[str, Any]) -> str:
    """The verdict and the figures behind it, in two lines for the terminal."""
    d, oos, base = wf["expectancy_difference_pips"], wf["out_of_sample"], wf["baseline"]
    chosen = ", ".join(dict.fromkeys(s["chosen"] for s in wf["steps"]))
    what = {
        IMPROVED: "the tuned dynamic variant beats {b} out of sample",
        WORSE: "the tuned dynamic variant does worse than {b} out of sample",
        INCONCLUSIVE: "no difference from {b} can be claimed out of sample",
    }[verdict(wf)].format(b=wf["baseline_variant"])
    return (
        f"walk-forward verdict ({wf['folds']} folds): {verdict(wf)}: {what}\n"
        f"  {oos['trades']:,} out-of-sample trades on {chosen}: expectancy "
        f"{_pips(oos['expectancy_pips'])} pips against {_pips(base['expectancy_pips'])}, "
        f"difference {_pips(d['value'])} (95 % CI {_pips(d['ci_low'])} .. {_pips(d['ci_high'])})"
    )


def _pips(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"
