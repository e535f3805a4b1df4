"""Inserts retried after an unknown commit outcome write one row, on both engines."""

from __future__ import annotations

from typing import Any

import trio

from tests.adapters.store.store_helpers import T0, flaky_commit, raw_sql, trade
from traild.adapters.store import open_store
from traild.core.messages import AlertRecord, StageRecalculation


def _recalc(trade_id: int, minute: int = 0) -> StageRecalculation:
    return StageRecalculation(
        trade_id=trade_id,
        recalculated_at=T0.replace(minute=minute),
        old_volatility_regime="normal",
        new_volatility_regime="extreme",
        market_regime="trending",
        atr_pips=12.5,
        session="london",
        method="dynamic_volatility",
        fallback_reason=None,
        old_stages={"stage1_trigger": 20.0},
        new_stages={"stage1_trigger": 32.0},
    )


async def test_an_alert_retried_after_an_unknown_outcome_is_written_once(db_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True, write_timeout=10) as store:
            calls = flaky_commit(store)
            alert = AlertRecord(0, "CS.D.EURUSD.MINI.IP", 0.0008, "high", None, "london", None, T0)
            added = await store.add_alert(alert)
            assert len(calls) == 2  # it landed, was reported lost, and was retried
            rows = await raw_sql(db_url, "SELECT id, epic FROM alert_history")
            fetched = await store.get_alert(added.id)
    assert rows == [(added.id, "CS.D.EURUSD.MINI.IP")]
    assert fetched is not None and fetched.volatility_regime == "high"


async def test_two_equal_alerts_written_normally_are_two_rows(db_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True, write_timeout=10) as store:
            alert = AlertRecord(0, "CS.D.EURUSD.MINI.IP", 0.0008, "high", None, "london")
            first, second = await store.add_alert(alert), await store.add_alert(alert)
    assert first.id != second.id  # the check runs only for a retry, never for a new write


async def test_a_recalculation_retried_after_an_unknown_outcome_is_stored_once(
    db_url: str, log_records: list[Any]
) -> None:
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True, write_timeout=10) as store:
            added = await store.add_trade(trade("RECALC-1"))
            assert added.id is not None
            calls = flaky_commit(store)
            await store.record_recalculation(_recalc(added.id))
            assert len(calls) == 2
            await store.record_recalculation(_recalc(added.id, minute=15))  # a later bar
            history = await store.recalculations_since(None)
            current = await store.get_trade(added.id)
    assert [r.recalculated_at.minute for r in history] == [0, 15]
    assert current is not None and current.trailing_calculation_method == "dynamic_volatility"
    assert not [r for r in log_records if r["extra"].get("event") == "store.write_failed"]
