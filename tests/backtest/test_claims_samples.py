"""Claims on samples too small to judge, and the coverage of the day-bootstrap interval."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from tests.backtest.test_metrics import ROW
from traild.backtest.claims import MIN_DAYS, MIN_TRADES, expectancy_difference, judge_claims
from traild.backtest.engine import TradeRow

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_709_586_000_000  # 2024-03-04T21:00Z: the roll, Tuesday's trading day begins
FIX, DYN = "fixed+lock", "dynamic+lock"


def _rows(fixed: list[float], dynamic: list[float], spacing_ms: int) -> list[TradeRow]:
    """Scalp trades in both variants, ``spacing_ms`` apart from T0."""
    rows = []
    for i, (f, d) in enumerate(zip(fixed, dynamic, strict=True)):
        base = replace(ROW, trade_id=i, is_scalp=True, entry_ts=T0 + i * spacing_ms)
        rows.append(replace(base, variant=FIX, pnl_pips=f, mfe_pips=max(f, 0) + 1))
        rows.append(replace(base, variant=DYN, pnl_pips=d, mfe_pips=max(d, 0) + 1))
    return rows


def _result(rows: list[TradeRow], key: str, name: str) -> dict[str, Any]:
    claims = judge_claims(rows, [FIX, DYN], [(DYN, FIX)], {FIX, DYN})
    result: dict[str, Any] = claims["criteria"][key]["results"][name]
    return result


def test_sixty_scalps_on_one_trading_day_are_inconclusive_not_met() -> None:
    rng = np.random.default_rng(1)
    fixed = (2.0 + rng.normal(0, 0.5, 60)).tolist()
    rows = _rows(fixed, [f * 1.75 for f in fixed], spacing_ms=10 * 60_000)  # 10 h of trading
    got = _result(rows, "scalp_expectancy_gain", f"{DYN} vs {FIX}")
    assert (got["trades"], got["days"]) == (60, 1)
    assert got["ci_low"] == got["ci_high"]  # one day: every draw is that day
    assert got["verdict"] == "inconclusive" and "1 trading days" in got["why"]


def test_many_trades_on_too_few_days_are_inconclusive() -> None:
    n = 40 * (MIN_DAYS - 1)
    fixed = [2.0, 1.0] * (n // 2)
    rows = _rows(fixed, [f * 2 for f in fixed], spacing_ms=DAY // 40)
    got = _result(rows, "scalp_expectancy_gain", f"{DYN} vs {FIX}")
    assert got["days"] == MIN_DAYS - 1 and got["trades"] == n
    assert got["verdict"] == "inconclusive"


def test_enough_days_and_trades_decide_the_same_data() -> None:
    fixed = [2.0, 1.0] * (2 * MIN_DAYS)
    rows = _rows(fixed, [f * 2 for f in fixed], spacing_ms=DAY // 4)
    got = _result(rows, "scalp_expectancy_gain", f"{DYN} vs {FIX}")
    assert (got["trades"], got["days"]) == (4 * MIN_DAYS, MIN_DAYS) and 4 * MIN_DAYS >= MIN_TRADES
    assert got["verdict"] == "met" and "why" not in got


def test_a_variant_without_trades_never_meets_the_lock_claim() -> None:
    only_fixed = [r for r in _rows([1.0] * 40, [1.0] * 40, DAY) if r.variant == FIX]
    got = _result(only_fixed, "lock_violations", DYN)
    assert (got["trades"], got["verdict"]) == (0, "inconclusive")
    assert got["why"] == "no trades of this kind"


def test_a_lock_violation_is_not_met_on_any_sample_but_none_in_a_few_trades_proves_nothing() -> (
    None
):
    rows = _rows([1.0] * 3, [1.0] * 3, HOUR)
    assert _result(rows, "lock_violations", DYN)["verdict"] == "inconclusive"
    rows[1] = replace(rows[1], lock_violation=True)  # the dynamic copy of trade 0
    assert _result(rows, "lock_violations", DYN)["verdict"] == "not_met"


def test_the_day_bootstrap_interval_covers_a_known_difference_at_about_95_percent() -> None:
    """300 samples of 25 trading days x 8 paired trades; the trades of a day share a market
    move (so trades are not independent), the dynamic variant gains +1 pip on average with
    its own noise. The 95 % interval of the expectancy difference contains +1 in about 95 %
    of the samples (a bootstrap over trades instead of days would cover far less)."""
    rng = np.random.default_rng(2024)
    days, per_day, effect, seeds = 25, 8, 1.0, 300
    day_of = np.repeat(np.arange(days), per_day)
    covered = 0
    for _ in range(seeds):
        market = rng.normal(0, 6.0, days)[day_of]
        fixed = market + rng.normal(0, 3.0, day_of.size)
        gain = effect + rng.normal(0, 2.0, days)[day_of] + rng.normal(0, 2.0, day_of.size)
        rows = _rows(fixed.tolist(), (fixed + gain).tolist(), DAY // per_day)
        value, low, high = expectancy_difference(
            [r for r in rows if r.variant == DYN], [r for r in rows if r.variant == FIX]
        )
        assert value is not None and low is not None and high is not None
        covered += low <= effect <= high
    assert 0.90 <= covered / seeds <= 0.985
