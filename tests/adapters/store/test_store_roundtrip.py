"""Every TradeStore method on SQLite and PostgreSQL: what goes in comes back, in traild's types."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import trio

from tests.adapters.store.store_helpers import T0, raw_sql, trade
from traild.adapters.store import SqlTradeStore, open_store
from traild.core.calculator import CalculatedStages, StageConfig
from traild.core.errors import StoreError
from traild.core.messages import AlertRecord, AmendState, Direction, TradeRecord, TradeStatus

STAGES = CalculatedStages(
    StageConfig(9.45, 1.26, 20.0, 8.0, 30.0, 15.0, 40.0, 1.0, 10.0),
    "dynamic_volatility",
    None,
    0.63,
    8.0,
).to_json()


def every_field(deal_id: str = "DEAL-ALL") -> TradeRecord:
    return TradeRecord(
        deal_id=deal_id,
        epic="CS.D.USDJPY.MINI.IP",
        direction=Direction.SELL,
        size=2.5,
        entry_price=151.234,
        sl_price=151.55,
        initial_sl_price=151.6,
        limit_price=150.5,
        status=TradeStatus.OPEN,
        opened_at=T0,
        closed_at=T0 + timedelta(hours=1),
        exit_price=151.0,
        exit_reason="limit",
        pnl_pips=23.4,
        is_scalp_trade=True,
        alert_id=77,
        best_price=150.9,
        atr_at_entry=0.08,
        volatility_regime="low",
        market_regime_at_entry="trending",
        session_at_entry="asian",
        calculated_stages=STAGES,
        trailing_calculation_method="dynamic_volatility",
        fallback_reason=None,
        trailing_override="fixed",
        profit_lock_applied_at=T0 + timedelta(minutes=5),
        stop_pips=31.6,
        limit_pips=73.4,
    )


async def test_add_trade_round_trips_every_field(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        added = await store.add_trade(every_field())
        assert added.id is not None
        assert added == replace(every_field(), id=added.id)
        assert await store.get_trade(added.id) == added
        assert await store.get_trade_by_deal("DEAL-ALL") == added
        assert await store.get_trade(added.id + 1000) is None
        assert await store.get_trade_by_deal("nope") is None


async def test_datetimes_come_back_timezone_aware_utc(store: SqlTradeStore) -> None:
    paris = timezone(timedelta(hours=2))
    with trio.fail_after(30):
        added = await store.add_trade(trade(opened_at=datetime(2024, 5, 1, 14, 0, tzinfo=paris)))
        assert added.id is not None
        loaded = await store.get_trade(added.id)
        assert loaded is not None and loaded.opened_at is not None
        assert loaded.opened_at.tzinfo == UTC
        assert loaded.opened_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def test_naive_datetime_is_refused_before_it_is_queued(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        with pytest.raises(StoreError, match="naive datetime"):
            await store.add_trade(trade(opened_at=datetime(2024, 5, 1, 12, 0)))
        assert store.statistics().queued_writes == 0


async def test_duplicate_deal_id_fails_that_write_only(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        await store.add_trade(trade("DUP"))
        with pytest.raises(StoreError, match="refused"):
            await store.add_trade(trade("DUP"))
        other = await store.add_trade(trade("OTHER"))
        assert other.id is not None
        stats = store.statistics()
        assert (stats.failed_writes, stats.queued_writes) == (1, 0)


async def test_load_open_trades_returns_pending_and_open_only(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        for deal, status in [
            ("P", TradeStatus.PENDING),
            ("O", TradeStatus.OPEN),
            ("C", TradeStatus.CLOSED),
            ("U", TradeStatus.UNMANAGED),
        ]:
            await store.add_trade(trade(deal, status=status))
        loaded = await store.load_open_trades()
        assert [t.deal_id for t in loaded] == ["P", "O"]


async def test_adopt_trade_records_fill_conditions_and_stages(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        pending = await store.add_trade(
            trade(
                "PEND",
                status=TradeStatus.PENDING,
                entry_price=None,
                sl_price=None,
                initial_sl_price=None,
                opened_at=None,
                stop_pips=15.0,
            )
        )
        assert pending.id is not None
        await store.adopt_trade(
            pending.id,
            status=TradeStatus.OPEN,
            entry_price=1.10002,
            sl_price=1.09852,
            initial_sl_price=1.09852,
            opened_at=T0,
            best_price=1.10002,
            atr_at_entry=0.0008,
            volatility_regime="normal",
            session_at_entry="london",
            calculated_stages=STAGES,
            trailing_calculation_method="dynamic_volatility",
        )
        adopted = await store.get_trade(pending.id)
        assert adopted is not None
        assert adopted.status is TradeStatus.OPEN
        assert (adopted.entry_price, adopted.sl_price, adopted.stop_pips) == (
            1.10002,
            1.09852,
            15.0,
        )
        assert adopted.calculated_stages == STAGES
        assert adopted.session_at_entry == "london"
        with pytest.raises(StoreError, match="unknown trade_log field"):
            await store.adopt_trade(pending.id, no_such_column=1)
        with pytest.raises(StoreError, match="unknown trade_log field"):
            await store.adopt_trade(pending.id, deal_id="RENAMED")


async def test_save_progress_persists_best_price(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        added = await store.add_trade(trade())
        assert added.id is not None
        await store.save_progress(added.id, 1.1012)
        await store.save_progress(added.id, 1.1019)
        loaded = await store.get_trade(added.id)
        assert loaded is not None and loaded.best_price == 1.1019


async def test_write_ahead_sequence_pending_sent_confirmed_sets_sl_price(
    store: SqlTradeStore,
) -> None:
    with trio.fail_after(30):
        added = await store.add_trade(trade())
        assert added.id is not None
        amendment = await store.write_amendment(
            added.id, "DEAL-1", 1.1001, 1.0985, "profit_lock", T0
        )
        [pending] = await store.unfinished_amendments()
        assert (pending.id, pending.state, pending.requested_level) == (
            amendment,
            AmendState.PENDING,
            1.1001,
        )
        assert pending.previous_level == 1.0985 and pending.created_at == T0
        unchanged = await store.get_trade(added.id)
        assert unchanged is not None and unchanged.sl_price == 1.0985  # not before confirmation

        await store.update_amendment(
            amendment, AmendState.SENT, T0 + timedelta(seconds=1), broker_ref="REF-1"
        )
        [sent] = await store.unfinished_amendments()
        assert (sent.state, sent.broker_ref) == (AmendState.SENT, "REF-1")

        await store.confirm_amendment(
            amendment, 1.1001, T0 + timedelta(seconds=2), profit_lock=True
        )
        assert await store.unfinished_amendments() == []
        [confirmed] = await store.amendments_of(added.id)
        assert confirmed.state is AmendState.CONFIRMED
        assert confirmed.updated_at == T0 + timedelta(seconds=2)
        moved = await store.get_trade(added.id)
        assert moved is not None
        assert moved.sl_price == 1.1001
        assert moved.profit_lock_applied_at == T0 + timedelta(seconds=2)


async def test_state_changes_of_a_still_queued_amendment_are_folded_into_its_insert(
    store: SqlTradeStore,
) -> None:
    """The gateway sends before the pending row is durable; under load it is often sent and
    answered before the writer has taken the insert. Such changes ride on the insert: one
    write per amendment (plus the trade's stop), the same rows as written step by step."""
    with trio.fail_after(30):
        added = await store.add_trade(trade())
        assert added.id is not None
        before = store.statistics().committed_writes
        confirmed = await store.write_amendment(
            added.id, "DEAL-1", 1.1001, 1.0985, "profit_lock", T0, durable=False
        )
        await store.update_amendment(
            confirmed, AmendState.SENT, T0 + timedelta(seconds=1), broker_ref="R", durable=False
        )
        await store.confirm_amendment(
            confirmed, 1.1001, T0 + timedelta(seconds=2), profit_lock=True
        )
        refused = await store.write_amendment(
            added.id, "DEAL-1", 1.1005, 1.1001, "stage1", T0, durable=False
        )
        await store.update_amendment(refused, AmendState.REJECTED, T0, error="too close")
        assert store.statistics().committed_writes - before == 3  # 2 inserts + the trade
        first, second = await store.amendments_of(added.id)
        assert (first.state, first.broker_ref, first.created_at, first.updated_at) == (
            AmendState.CONFIRMED,
            "R",
            T0,
            T0 + timedelta(seconds=2),
        )
        assert (second.state, second.error) == (AmendState.REJECTED, "too close")
        moved = await store.get_trade(added.id)
        assert moved is not None
        assert (moved.sl_price, moved.profit_lock_applied_at) == (
            1.1001,
            T0 + timedelta(seconds=2),
        )
        # once the insert is durable, a change is an update of its own, as before
        later = await store.write_amendment(added.id, "DEAL-1", 1.1010, 1.1001, "stage2", T0)
        before = store.statistics().committed_writes
        await store.update_amendment(later, AmendState.SENT, T0)
        await store.confirm_amendment(later, 1.1010, T0)
        assert store.statistics().committed_writes - before == 2
        assert (await store.get_trade(added.id)).sl_price == 1.1010  # type: ignore[union-attr]


async def test_profit_lock_time_is_recorded_once(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        added = await store.add_trade(trade())
        assert added.id is not None
        for step, level in enumerate((1.1001, 1.1010)):
            ts = T0 + timedelta(minutes=step)
            amendment = await store.write_amendment(added.id, "DEAL-1", level, None, "stage1", ts)
            await store.confirm_amendment(amendment, level, ts, profit_lock=True)
        moved = await store.get_trade(added.id)
        assert moved is not None
        assert (moved.sl_price, moved.profit_lock_applied_at) == (1.1010, T0)


async def test_rejected_and_failed_amendments_leave_the_stop_alone(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        added = await store.add_trade(trade())
        assert added.id is not None
        rejected = await store.write_amendment(added.id, "DEAL-1", 1.1, 1.0985, "early_be", T0)
        failed = await store.write_amendment(added.id, "DEAL-1", 1.1002, 1.0985, "stage1", T0)
        await store.update_amendment(rejected, AmendState.REJECTED, T0, error="stop too close")
        await store.update_amendment(failed, AmendState.FAILED, T0, error="x" * 2000)
        first, second = await store.amendments_of(added.id)
        assert (first.state, first.error) == (AmendState.REJECTED, "stop too close")
        assert second.state is AmendState.FAILED and second.error == "x" * 500
        loaded = await store.get_trade(added.id)
        assert loaded is not None and loaded.sl_price == 1.0985
        assert await store.unfinished_amendments() == []


async def test_unfinished_amendments_lists_pending_and_sent_in_id_order(
    store: SqlTradeStore,
) -> None:
    with trio.fail_after(30):
        a = await store.add_trade(trade("A"))
        b = await store.add_trade(trade("B"))
        assert a.id is not None and b.id is not None
        ids = [
            await store.write_amendment(tid, deal, 1.1 + i / 1e4, None, "stage3", T0)
            for i, (tid, deal) in enumerate([(a.id, "A"), (b.id, "B"), (a.id, "A"), (b.id, "B")])
        ]
        await store.update_amendment(ids[1], AmendState.SENT, T0)
        await store.confirm_amendment(ids[2], 1.1002, T0)
        unfinished = await store.unfinished_amendments()
        assert [(u.id, u.state) for u in unfinished] == [
            (ids[0], AmendState.PENDING),
            (ids[1], AmendState.SENT),
            (ids[3], AmendState.PENDING),
        ]
        assert [u.deal_id for u in unfinished] == ["A", "B", "B"]


async def test_updating_an_unknown_amendment_is_a_store_error(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        with pytest.raises(StoreError, match="no stop_amendment row 999"):
            await store.update_amendment(999, AmendState.SENT, T0)
        with pytest.raises(StoreError, match="no stop_amendment 999"):
            await store.confirm_amendment(999, 1.1, T0)
        with pytest.raises(StoreError, match="no trade_log row 999"):
            await store.save_progress(999, 1.1)


async def test_amendment_ids_continue_after_reopening(db_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True) as store:
            added = await store.add_trade(trade())
            assert added.id is not None
            first = await store.write_amendment(added.id, "DEAL-1", 1.1, None, "stage1", T0)
        async with open_store(db_url) as store:
            second = await store.write_amendment(added.id, "DEAL-1", 1.2, None, "stage2", T0)
        assert (first, second) == (1, 2)


async def test_close_trade_set_status_and_set_method(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        a = await store.add_trade(trade("A"))
        b = await store.add_trade(trade("B"))
        assert a.id is not None and b.id is not None
        await store.set_method(a.id, "fixed", "no_atr")
        await store.close_trade(a.id, 1.1012, "stop", 11.2, T0 + timedelta(hours=2))
        await store.set_status(b.id, "unmanaged", reason="restart budget exhausted")
        closed = await store.get_trade(a.id)
        assert closed is not None
        assert (closed.status, closed.exit_price, closed.exit_reason, closed.pnl_pips) == (
            TradeStatus.CLOSED,
            1.1012,
            "stop",
            11.2,
        )
        assert closed.closed_at == T0 + timedelta(hours=2)
        assert (closed.trailing_calculation_method, closed.fallback_reason) == ("fixed", "no_atr")
        unmanaged = await store.get_trade(b.id)
        assert unmanaged is not None and unmanaged.status is TradeStatus.UNMANAGED
        await store.set_status(b.id, "closed", reason="manual")
        manual = await store.get_trade(b.id)
        assert manual is not None and manual.exit_reason == "manual"
        with pytest.raises(StoreError, match="unknown trade status"):
            await store.set_status(b.id, "sleeping")


async def test_trades_since_filters_on_opened_at_and_keeps_unfilled(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        await store.add_trade(trade("OLD", opened_at=T0 - timedelta(days=30)))
        await store.add_trade(trade("NEW", opened_at=T0))
        await store.add_trade(trade("UNFILLED", status=TradeStatus.PENDING, opened_at=None))
        recent = await store.trades_since(T0 - timedelta(days=1))
        assert [t.deal_id for t in recent] == ["NEW", "UNFILLED"]
        assert [t.deal_id for t in await store.trades_since(None)] == ["OLD", "NEW", "UNFILLED"]
        exact = await store.trades_since(T0)
        assert [t.deal_id for t in exact] == ["NEW", "UNFILLED"]


async def test_alert_round_trip(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        alert = AlertRecord(
            0, "CS.D.EURUSD.MINI.IP", 0.00081, "high", "trending", "overlap", "ema_cross", T0
        )
        added = await store.add_alert(alert)
        assert added.id > 0
        assert await store.get_alert(added.id) == replace(alert, id=added.id)
        assert await store.get_alert(added.id + 1) is None


@pytest.mark.parametrize(
    "stored",
    [
        '"just text"',
        "[1, 2, 3]",
        '{"stages": {"early_be_trigger": 5}}',
        '{"method": "dynamic_volatility", "stages": {"early_be_trigger": 50, '
        '"early_be_buffer": 2, "stage1_trigger": 20, "stage1_lock": 8, "stage2_trigger": 30, '
        '"stage2_lock": 15, "stage3_trigger": 40, "stage3_atr_multiplier": 1, '
        '"stage3_min_distance": 10}}',
        "not json {",
    ],
    ids=["string", "array", "missing-fields", "inconsistent", "unparseable"],
)
async def test_corrupt_calculated_stages_is_logged_and_loaded_as_none(
    store: SqlTradeStore, db_url: str, stored: str, log_records: list[dict[str, Any]]
) -> None:
    if stored.startswith("not json") and db_url.startswith("postgresql"):
        stored = json.dumps(stored)  # PostgreSQL refuses invalid JSON: store it as a JSON string
    with trio.fail_after(30):
        added = await store.add_trade(trade(calculated_stages=STAGES))
        assert added.id is not None
        quoted = stored.replace("'", "''")
        await raw_sql(db_url, f"UPDATE trade_log SET calculated_stages = '{quoted}'")
        [loaded] = await store.load_open_trades()
        assert loaded.calculated_stages is None
        assert loaded.deal_id == "DEAL-1"
        assert await store.get_trade(added.id) == loaded
    events = [r for r in log_records if r["extra"].get("event") == "store.corrupt_stages"]
    assert events and events[0]["extra"]["trade_id"] == added.id
    assert events[0]["extra"]["deal_id"] == "DEAL-1"


async def test_row_with_unknown_direction_is_skipped_by_the_loader(
    store: SqlTradeStore, db_url: str, log_records: list[dict[str, Any]]
) -> None:
    with trio.fail_after(30):
        await store.add_trade(trade("GOOD"))
        bad = await store.add_trade(trade("BAD"))
        await raw_sql(db_url, f"UPDATE trade_log SET direction = 'SIDEWAYS' WHERE id = {bad.id}")
        assert [t.deal_id for t in await store.load_open_trades()] == ["GOOD"]
        with pytest.raises(StoreError, match="SIDEWAYS"):
            await store.get_trade_by_deal("BAD")
    assert any(r["extra"].get("event") == "store.bad_row" for r in log_records)


async def test_concurrent_writers_all_land_in_submission_order(store: SqlTradeStore) -> None:
    with trio.fail_after(60):
        added = await store.add_trade(trade())
        assert added.id is not None
        trade_id = added.id
        issued: list[int] = []

        async def actor(n: int) -> None:
            for i in range(10):
                level = 1.1 + (n * 10 + i) / 1e5
                issued.append(
                    await store.write_amendment(trade_id, "DEAL-1", level, None, "stage3", T0)
                )

        async with trio.open_nursery() as nursery:
            for n in range(10):
                nursery.start_soon(actor, n)
        rows = await store.amendments_of(trade_id)
        assert [r.id for r in rows] == list(range(1, 101))
        assert sorted(issued) == list(range(1, 101))
        stats = store.statistics()
        assert stats.committed_writes == 101 and stats.queued_writes == 0


INTEGRATION_SQL = (
    "INSERT INTO trade_log (deal_id, epic, direction, size, entry_price, sl_price, limit_price, "
    "status, opened_at, is_scalp_trade, alert_id) VALUES ('DIAAAAQ7ZKXYZ', 'CS.D.EURUSD.MINI.IP', "
    "'BUY', 1.0, 1.10000, 1.09850, 1.10300, 'open', CURRENT_TIMESTAMP, false, NULL)"
)


async def test_a_trade_inserted_by_the_trading_app_is_loaded_for_adoption(
    store: SqlTradeStore, db_url: str
) -> None:
    with trio.fail_after(30):
        before = datetime.now(UTC).replace(microsecond=0)
        await raw_sql(db_url, INTEGRATION_SQL)  # the SPEC §5 integration contract, verbatim
        [adopted] = await store.load_open_trades()
    assert (adopted.deal_id, adopted.direction, adopted.status) == (
        "DIAAAAQ7ZKXYZ",
        Direction.BUY,
        TradeStatus.OPEN,
    )
    assert (adopted.entry_price, adopted.sl_price, adopted.limit_price) == (1.1, 1.0985, 1.103)
    assert adopted.opened_at is not None and adopted.opened_at.tzinfo == UTC
    assert before - timedelta(seconds=5) <= adopted.opened_at <= datetime.now(UTC)
    assert adopted.is_scalp_trade is False and adopted.calculated_stages is None
