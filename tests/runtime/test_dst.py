"""The deterministic simulation (issue 19): the fake broker, the simulation store, the checker
that must not pass vacuously, and the big run (marked ``dst``: ``pytest -m dst``)."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing

from traild.core.errors import BrokerTimeout, BrokerUnavailable
from traild.core.instruments import InstrumentTable
from traild.core.ladder import LadderPolicy
from traild.core.messages import (
    Direction,
    Position,
    PositionAmended,
    PositionClosed,
    Tick,
    TradeRecord,
)
from traild.runtime.gateway import AmendTarget, Gateway
from traild.runtime.router import Router
from traild.testing import dst, dst_world
from traild.testing.dst_check import Checker
from traild.testing.dst_schedule import T0
from traild.testing.fake_broker import FakeBroker, FaultRates, LatencyModel
from traild.testing.fence import Fence
from traild.testing.memory_store import SimStore

EPIC = "CS.D.EURUSD.MINI.IP"
SEEDS = 2000


class Scripted(LatencyModel):
    """Latencies in the order given (then 0.1 s)."""

    def __init__(self, *values: float) -> None:
        super().__init__()
        object.__setattr__(self, "_values", list(values))

    def draw(self, rng: random.Random) -> float:
        values: list[float] = object.__getattribute__(self, "_values")
        return values.pop(0) if values else 0.1


def _broker(latency: LatencyModel | None = None, **kw: Any) -> FakeBroker:
    broker = FakeBroker(random.Random(1), InstrumentTable(), latency or Scripted(), **kw)
    for deal, direction, stop in (("B", Direction.BUY, 1.0980), ("S", Direction.SELL, 1.1020)):
        broker.add_position(Position(deal, EPIC, direction, 1.0, 1.1000, stop, None, T0))
    broker.on_market(_tick(1.1000, 1.1001))
    return broker


def _tick(bid: float, ask: float) -> Tick:
    return Tick(EPIC, T0 + timedelta(seconds=trio.current_time()), bid, ask)


async def test_fake_broker_answers_out_of_order_after_latency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = _broker(Scripted(0.8, 0.2))
    done: list[tuple[str, float]] = []

    async def amend(deal: str, level: float) -> None:
        result = await broker.amend_stop(deal, level, None)
        assert result.accepted
        done.append((deal, trio.current_time()))

    async with trio.open_nursery() as n:
        n.start_soon(broker.serve)
        n.start_soon(amend, "B", 1.0990)
        await trio.testing.wait_all_tasks_blocked()
        n.start_soon(amend, "S", 1.1010)
        await trio.sleep(1.0)
        n.cancel_scope.cancel()
    assert [d for d, _ in done] == ["S", "B"]
    assert done[1][1] == pytest.approx(0.8)
    assert [c.source for c in broker.positions["B"].history] == ["initial", "traild"]


async def test_fake_broker_refuses_wrong_side_and_too_close_against_latest_quote(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = _broker(min_stop_pips={EPIC: 3.0})
    async with trio.open_nursery() as n:
        n.start_soon(broker.serve)
        wrong = await broker.amend_stop("B", 1.1001, None)
        close = await broker.amend_stop("B", 1.0998, None)
        fine = await broker.amend_stop("B", 1.0997, None)
        n.cancel_scope.cancel()
    assert not wrong.accepted and "wrong side" in wrong.reason
    assert not close.accepted and "too close" in close.reason
    assert fine.accepted and broker.positions["B"].stop == 109970


async def test_fake_broker_timeouts_leave_the_outcome_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    applied = _broker(faults=FaultRates(timeout=1.0, timeout_applied=1.0))
    lost = _broker(faults=FaultRates(timeout=1.0, timeout_applied=0.0))
    for broker in (applied, lost):
        broker.faults_on = True
        async with trio.open_nursery() as n:
            n.start_soon(broker.serve)
            with pytest.raises(BrokerTimeout):
                await broker.amend_stop("B", 1.0990, None)
            n.cancel_scope.cancel()
    assert applied.positions["B"].stop == 109900
    assert lost.positions["B"].stop == 109800


async def test_fake_broker_request_lands_after_its_caller_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = _broker(Scripted(2.0))
    async with trio.open_nursery() as n:
        n.start_soon(broker.serve)
        with trio.move_on_after(0.1):
            await broker.amend_stop("B", 1.0990, None)
        await trio.sleep(3.0)
        n.cancel_scope.cancel()
    assert broker.positions["B"].stop == 109900


async def test_fake_broker_closes_on_its_side_and_pushes_changes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = _broker()
    events: list[object] = []

    async def emit(event: object) -> None:
        events.append(event)

    async with trio.open_nursery() as n:
        n.start_soon(broker.run, emit)
        await trio.testing.wait_all_tasks_blocked()
        assert broker.external_change("S", remove=True, loosen_pips=0)
        broker.on_market(_tick(1.0980, 1.0981))  # BUY stopped on the bid
        await trio.testing.wait_all_tasks_blocked()
        broker.fail_next_reads(1)
        with pytest.raises(BrokerUnavailable):
            await broker.open_positions()
        assert [p.deal_id for p in await broker.open_positions()] == ["S"]
        n.cancel_scope.cancel()
    assert isinstance(events[0], PositionAmended) and events[0].stop is None
    assert isinstance(events[1], PositionClosed) and events[1].deal_id == "B"
    assert events[1].exit_price == 1.0980 and events[1].reason == "stop"
    assert broker.positions["S"].history[-1].source == "external"


async def test_fence_keeps_a_dead_runtime_from_the_broker_and_the_store(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fence = Fence()
    broker = _broker(fence=fence)
    store = SimStore(random.Random(2), fence)
    store.insert(TradeRecord("B", EPIC, Direction.BUY, 1.0, 1.1, 1.098, 1.098))

    async def dead_runtime() -> None:
        fence.kill(trio.lowlevel.current_task())
        await store.save_progress(1, 1.1005)
        await broker.amend_stop("B", 1.0990, None)

    async with trio.open_nursery() as n:
        n.start_soon(broker.serve)
        with trio.move_on_after(5):
            await dead_runtime()
        n.cancel_scope.cancel()
    assert broker.counts["amend_calls"] == 0
    assert store.trades[1].best_price is None


async def test_sim_store_with_the_journal_keeps_queued_writes_through_a_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = SimStore(random.Random(3), lag_mean=1.0, lag_max=1.0)
    store.insert(TradeRecord("B", EPIC, Direction.BUY, 1.0, 1.1, 1.098, 1.098))
    aid = await store.write_amendment(1, "B", 1.099, 1.098, "stage1", T0, durable=False)
    await store.confirm_amendment(aid, 1.099, T0, durable=False)
    assert store.trades[1].sl_price == 1.098 and store.queued == 2
    assert store.crash() == 2  # applied, as the next start applies the journal
    assert store.trades[1].sl_price == 1.099 and store.queued == 0


async def test_sim_store_loses_non_durable_writes_in_a_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = SimStore(random.Random(3), lag_mean=1.0, lag_max=1.0, journal=False)
    store.insert(TradeRecord("B", EPIC, Direction.BUY, 1.0, 1.1, 1.098, 1.098))
    aid = await store.write_amendment(1, "B", 1.099, 1.098, "stage1", T0, durable=False)
    await store.confirm_amendment(aid, 1.099, T0, durable=False)
    assert store.trades[1].sl_price == 1.098 and store.queued == 2
    assert store.crash() == 2
    await trio.sleep(2)
    assert store.trades[1].sl_price == 1.098 and not store.amendments
    aid = await store.write_amendment(1, "B", 1.0995, 1.098, "stage1", T0, durable=False)
    await store.confirm_amendment(aid, 1.0995, T0, durable=True)  # flushes what came before
    assert store.trades[1].sl_price == 1.0995
    assert [v for _, v, _ in store.sl_log[1]] == [1.098, 1.0995]


async def test_checker_catches_loosening_db_claims_and_a_missing_lock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = _broker()
    store = SimStore(random.Random(4))
    trade = store.insert(TradeRecord("B", EPIC, Direction.BUY, 1.0, 1.1, 1.098, 1.098))
    store.insert(TradeRecord("S", EPIC, Direction.SELL, 1.0, 1.1, 1.102, 1.102))
    checker = Checker(broker, store, {"B": 1, "S": 2}, LadderPolicy(), w=5.0)
    async with trio.open_nursery() as n:
        n.start_soon(broker.serve)
        await broker.amend_stop("B", 1.0990, None)
        await broker.amend_stop("B", 1.0985, None)  # traild loosens: (a)
        checker.step()
        assert [v.invariant for v in checker.violations] == ["a"]
        assert trade.id is not None
        aid = await store.write_amendment(trade.id, "B", 1.0995, None, "x", T0)
        await store.confirm_amendment(aid, 1.0995, T0)  # the database claims more: (b)
        checker.step()
        for ask in (1.0991, 1.0989, 1.0990):  # the SELL reaches +10 (on the ask)
            tick = Tick(EPIC, T0, ask - 0.0001, ask)
            broker.on_market(tick)
            checker.observe(tick, published=True)
        await trio.sleep(6.0)
        checker.calm_end(0.0, trio.current_time())  # no lock at the broker: (c)
        n.cancel_scope.cancel()
    assert [(v.invariant, v.deal_id) for v in checker.violations] == [
        ("a", "B"),
        ("b", "B"),
        ("c", "S"),
    ]


class _LooseningGateway(Gateway):
    """A deliberately broken runtime: every second target moves the stop 5 pips away from
    the market instead of towards it."""

    flip = False

    def submit(self, target: AmendTarget) -> bool:
        _LooseningGateway.flip = not _LooseningGateway.flip
        if self.flip and target.previous is not None:
            away = target.previous - 0.0005
            if target.better(away, target.previous):
                away = target.previous + 0.0005
            target = dataclasses.replace(target, level=round(away, 5))
            self.book.enqueue(target)  # past the gateway's own check: the bug being simulated
            self._touch()
            return True
        return super().submit(target)


class _SpinningRouter(Router):
    """A deliberately broken runtime: a task that never blocks once ticks flow."""

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as n:
            n.start_soon(super().run)
            await trio.sleep(20)
            task_status.started()
            while True:
                await trio.lowlevel.checkpoint()


def test_harness_catches_a_loosening_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dst_world, "Gateway", _LooseningGateway)
    results = [dst.run_seed(seed, faults=False) for seed in range(10)]
    assert any(v.invariant == "a" for r in results for v in r.violations)


def test_harness_catches_a_busy_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dst_world, "Router", _SpinningRouter)
    result = dst.run_seed(0, faults=False)
    assert [v.invariant for v in result.violations] == ["d"]


def test_a_seed_replays_exactly() -> None:
    first, second = dst.run_seed(7), dst.run_seed(7)
    assert first.digest == second.digest and first.violations == second.violations
    assert first.replay() == "python -m traild.testing.dst --seed 7"


@pytest.mark.dst
def test_dst_2000_seeds_no_violations(capsys: pytest.CaptureFixture[str]) -> None:
    """THE BIG RUN: 2,000 seeds of the real runtime over faults, crashes and drift."""
    lines: list[str] = []
    code = dst.run_many(range(SEEDS), dst.Knobs(), False, lines.append)
    with capsys.disabled():
        print("\n" + "\n".join(lines[-8:]))
    failing = Counter(line.split()[1] for line in lines if line.startswith("seed "))
    assert code == 0, f"{len(failing)} seeds with violations:\n" + "\n".join(lines[:60])
