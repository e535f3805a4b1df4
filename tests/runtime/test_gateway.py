"""The gateway: write-ahead, confirmation, coalescing, priority, faults, halt."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import trio
import trio.testing

from tests.runtime.fakes import MemoryStore, ScriptedBroker
from traild.core.messages import AmendState, Direction, Position, Reason, TradeRecord
from traild.runtime.gateway import AmendTarget, Gateway

T0 = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)


async def _trade(store: MemoryStore, broker: ScriptedBroker, deal: str) -> TradeRecord:
    trade = await store.add_trade(
        TradeRecord(
            deal,
            "CS.D.EURUSD.MINI.IP",
            Direction.BUY,
            entry_price=1.1,
            sl_price=1.098,
            limit_price=1.12,
        )
    )
    broker.positions[deal] = Position(deal, trade.epic, Direction.BUY, 1.0, 1.1, 1.098, 1.12)
    return trade


class Sink:
    def __init__(self) -> None:
        self.confirmed: list[float] = []
        self.failed: list[str] = []

    def target(
        self,
        trade: TradeRecord,
        level: float,
        reason: Reason = Reason.STAGE3,
        priority: bool = False,
    ) -> AmendTarget:
        assert trade.id is not None
        return AmendTarget(
            trade.id,
            trade.deal_id,
            trade.epic,
            level,
            trade.sl_price,
            trade.limit_price,
            reason,
            priority,
            self.confirmed.append,
            self.failed.append,
            lambda a, b: a > b,
        )


def _gateway(broker: ScriptedBroker, store: MemoryStore, **kw: object) -> Gateway:
    return Gateway(broker, store, lambda: T0, retry_base=0.1, retry_max=1.0, **kw)  # type: ignore[arg-type]


async def test_confirmed_amendment_is_written_ahead_and_sets_the_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, broker, sink = MemoryStore(), ScriptedBroker(), Sink()
    trade = await _trade(store, broker, "D1")
    seen_states: list[AmendState] = []
    original = broker.amend_stop

    async def spy(deal_id: str, stop: float, limit: float | None):  # type: ignore[no-untyped-def]
        seen_states.extend(a.state for a in store.amendments.values())
        return await original(deal_id, stop, limit)

    broker.amend_stop = spy  # type: ignore[method-assign]
    gw = _gateway(broker, store)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            gw.submit(sink.target(trade, 1.1001, Reason.PROFIT_LOCK, True))
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert seen_states == [AmendState.SENT]  # durable before the broker saw it
    assert sink.confirmed == [1.1001]
    assert broker.calls == [("D1", 1.1001, 1.12)]  # the limit is always re-sent
    assert store.trades[1].sl_price == 1.1001
    assert store.trades[1].profit_lock_applied_at == T0
    assert [a.state for a in store.amendments.values()] == [AmendState.CONFIRMED]


async def test_newer_target_replaces_a_queued_one_and_one_is_in_flight_per_trade(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, broker, sink = MemoryStore(), ScriptedBroker(), Sink()
    trade = await _trade(store, broker, "D1")
    gw = _gateway(broker, store)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            gw.submit(sink.target(trade, 1.1001))
            await trio.testing.wait_all_tasks_blocked()
            # the first is in flight (or done); these two queue and the second replaces the first
            gw.submit(sink.target(trade, 1.1010))
            gw.submit(sink.target(trade, 1.1020))
            gw.submit(sink.target(trade, 1.1015))  # older/lower: ignored
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert [c[1] for c in broker.calls] == [1.1001, 1.1020]
    assert sink.confirmed == [1.1001, 1.1020]


async def test_profit_lock_jumps_the_queue(autojump_clock: trio.testing.MockClock) -> None:
    store, broker, sink = MemoryStore(), ScriptedBroker(), Sink()
    trades = [await _trade(store, broker, f"D{i}") for i in range(3)]
    gw = _gateway(broker, store, workers=1, allowance_per_minute=1)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            gw.submit(sink.target(trades[0], 1.1005))
            gw.submit(sink.target(trades[1], 1.1006))
            gw.submit(sink.target(trades[2], 1.1001, Reason.PROFIT_LOCK, True))
            await nursery.start(gw.run)
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert broker.calls[0][0] == "D2"


async def test_timeout_rereads_the_position_and_does_not_resend_when_applied(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, broker, sink = MemoryStore(), ScriptedBroker(["timeout-applied"]), Sink()
    trade = await _trade(store, broker, "D1")
    gw = _gateway(broker, store)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            gw.submit(sink.target(trade, 1.1001))
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert len(broker.calls) == 1
    assert sink.confirmed == [1.1001]
    assert store.trades[1].sl_price == 1.1001


async def test_timeout_not_applied_is_retried_after_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, broker, sink = MemoryStore(), ScriptedBroker(["timeout", "error", "ok"]), Sink()
    trade = await _trade(store, broker, "D1")
    gw = _gateway(broker, store)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            gw.submit(sink.target(trade, 1.1001))
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert [c[1] for c in broker.calls] == [1.1001, 1.1001, 1.1001]
    assert sink.confirmed == [1.1001]
    states = [a.state for a in store.amendments.values()]
    assert states == [AmendState.FAILED, AmendState.FAILED, AmendState.CONFIRMED]


async def test_rejection_goes_back_to_the_actor(autojump_clock: trio.testing.MockClock) -> None:
    store, broker, sink = MemoryStore(), ScriptedBroker(["reject"]), Sink()
    trade = await _trade(store, broker, "D1")
    gw = _gateway(broker, store)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            gw.submit(sink.target(trade, 1.1001))
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert sink.failed == ["stop too close"]
    assert store.trades[1].sl_price == 1.098  # unchanged without a confirmation
    assert [a.state for a in store.amendments.values()] == [AmendState.REJECTED]


async def test_rate_limit_pauses_and_the_amendment_lands_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, broker, sink = MemoryStore(), ScriptedBroker(["ratelimit", "ratelimit"]), Sink()
    trade = await _trade(store, broker, "D1")
    gw = _gateway(broker, store)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            gw.submit(sink.target(trade, 1.1001))
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert len(broker.calls) == 3
    assert sink.confirmed == [1.1001]
    assert gw.statistics().rate_limited == 2


async def test_halt_sends_nothing_until_resumed(autojump_clock: trio.testing.MockClock) -> None:
    store, broker, sink = MemoryStore(), ScriptedBroker(), Sink()
    trade = await _trade(store, broker, "D1")
    gw = _gateway(broker, store)
    gw.set_halted(True)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            gw.submit(sink.target(trade, 1.1001))
            await trio.sleep(50)
            assert broker.calls == []
            gw.set_halted(False)
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert sink.confirmed == [1.1001]


async def test_allowance_paces_amendments(autojump_clock: trio.testing.MockClock) -> None:
    store, broker, sink = MemoryStore(), ScriptedBroker(), Sink()
    trades = [await _trade(store, broker, f"D{i}") for i in range(5)]
    gw = _gateway(broker, store, allowance_per_minute=2)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            start = trio.current_time()
            for t in trades:
                gw.submit(sink.target(t, 1.1001))
            await gw.wait_idle()
            elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert len(broker.calls) == 5
    # a burst of 2, then one every 30 s of (virtual) time
    assert 89 <= elapsed <= 91


async def test_catch_up_amendments_go_through_the_rate_bucket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Re-applied (replay) levels count against the broker's allowance, so they are paced."""
    store, broker, sink = MemoryStore(), ScriptedBroker(), Sink()
    trades = [await _trade(store, broker, f"D{i}") for i in range(5)]
    gw = _gateway(broker, store, allowance_per_minute=2)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            start = trio.current_time()
            for t in trades:
                target = sink.target(t, 1.1001)
                target.replay = True
                gw.submit(target)
            await gw.wait_idle()
            elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert len(broker.calls) == 5 and sink.confirmed == [1.1001] * 5
    assert 89 <= elapsed <= 91  # a burst of 2, then one every 30 s, as for any amendment


class SlowStore(MemoryStore):
    """A write-ahead record that takes a while (a locked table)."""

    async def write_amendment(self, *args: Any, **kwargs: Any) -> int:
        await trio.sleep(5)
        return await super().write_amendment(*args, **kwargs)


async def test_halt_engaged_while_the_write_ahead_record_waits_sends_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, broker, sink = SlowStore(), ScriptedBroker(), Sink()
    trade = await _trade(store, broker, "D1")
    gw = _gateway(broker, store)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            gw.submit(sink.target(trade, 1.1001))
            await trio.sleep(1)
            gw.set_halted(True)
            await trio.sleep(20)
            assert broker.calls == []
            gw.set_halted(False)  # resumed: the target is still wanted and goes out
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert sink.confirmed == [1.1001] and len(broker.calls) == 1
    states = [a.state for a in store.amendments.values()]
    assert states == [AmendState.FAILED, AmendState.CONFIRMED]
