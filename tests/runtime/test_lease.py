"""The account lease on trio's MockClock: acquire, renew, stand by, take over, lose, and the
gateway's deadline (issue #22). The in-memory table runs the same ``core.lease.claim`` the
SQL adapter runs; the database's clock is trio's."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger

from tests.runtime.fakes import MemoryStore, ScriptedBroker
from tests.runtime.test_gateway import Sink, _gateway, _trade
from traild.core.lease import Instance, LeaseRow, Outcome, claim, replayable
from traild.runtime.lease import LeaseKeeper
from traild.testing.leases import MemoryLeases

TTL = 9.0
A = Instance("hostA:100:2024-05-01T00:00:00Z", "hostA:home", 100)
B = Instance("hostB:200:2024-05-01T00:00:01Z", "hostB:home", 200)


@pytest.fixture
def events() -> Any:
    seen: list[dict[str, Any]] = []
    handler = logger.add(lambda m: seen.append(m.record["extra"]), level="DEBUG")
    yield seen
    logger.remove(handler)


def _of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name]


# -- the pure rules --------------------------------------------------------------------------
def test_claim_gives_a_free_account_token_one_and_a_takeover_the_next_token() -> None:
    first = claim(None, "paper", A, 100.0, TTL)
    assert first.outcome is Outcome.ACQUIRED and first.row.token == 1
    assert first.row.expires == 100.0 + TTL
    held = claim(first.row, "paper", B, 100.0 + TTL - 0.01, TTL)
    assert held.outcome is Outcome.HELD and held.row == first.row
    taken = claim(first.row, "paper", B, 100.0 + TTL, TTL)
    assert taken.outcome is Outcome.TAKEN_OVER and taken.row.token == 2
    assert taken.previous == first.row and taken.row.owner == B.owner


def test_a_holder_of_another_home_is_never_taken_over_early_even_if_its_pid_is_gone() -> None:
    row = LeaseRow("paper", A.owner, A.home, A.pid, 3, 0.0, 50.0)
    assert claim(row, "paper", B, 10.0, TTL, holder_gone=True).outcome is Outcome.HELD
    same_home = Instance("hostA:101:later", A.home, 101)
    took = claim(row, "paper", same_home, 10.0, TTL, holder_gone=True)
    assert took.outcome is Outcome.TAKEN_OVER and took.row.token == 4


def test_journal_records_of_an_older_tenure_than_the_predecessor_are_not_replayable() -> None:
    assert replayable(None, 5, 4)  # written before leases
    assert replayable(5, 5, 4) and replayable(4, 5, 4)  # ours, or our crashed run's
    assert not replayable(3, 5, 4)  # another owner (token 4) wrote after it
    assert not replayable(4, 5, None)


# -- the keeper ------------------------------------------------------------------------------
async def test_a_free_lease_is_acquired_and_renewed_every_third_of_the_ttl(
    autojump_clock: trio.testing.MockClock, events: list[dict[str, Any]]
) -> None:
    leases = MemoryLeases()
    keeper = LeaseKeeper(leases, "paper", A, TTL)
    with trio.fail_after(1000):
        got = await keeper.acquire()
        assert got.outcome is Outcome.ACQUIRED and keeper.token == 1
        assert keeper.predecessor is None
        async with trio.open_nursery() as nursery:
            await nursery.start(keeper.run)
            await trio.sleep(10 * TTL + 1)
            assert keeper.may_send()
            assert leases.calls == 1 + 30  # the claim, then a renewal every 3 s
            nursery.cancel_scope.cancel()
    assert [e["fence"] for e in _of(events, "lease.acquired")] == [1]


async def test_the_send_deadline_always_falls_a_third_of_the_ttl_before_the_expiry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # the database acts late in each call and answers later still: the deadline is counted
    # from the moment the call was made, so it stays before the expiry the database wrote
    leases = MemoryLeases(latency=lambda: (0.4, 0.7))
    keeper = LeaseKeeper(leases, "paper", A, TTL)
    with trio.fail_after(1000):
        await keeper.acquire()
        async with trio.open_nursery() as nursery:
            await nursery.start(keeper.run)
            for _ in range(200):
                await trio.sleep(0.17)
                row = leases.rows["paper"]
                assert keeper.deadline <= row.expires - TTL / 3 + 1e-9
            nursery.cancel_scope.cancel()


async def test_a_standby_waits_then_takes_over_within_the_ttl_with_the_next_token(
    autojump_clock: trio.testing.MockClock, events: list[dict[str, Any]]
) -> None:
    leases = MemoryLeases()
    owner, standby = LeaseKeeper(leases, "paper", A, TTL), LeaseKeeper(leases, "paper", B, TTL)
    waited: list[LeaseRow] = []
    with trio.fail_after(1000):
        await owner.acquire()
        async with trio.open_nursery() as nursery:
            owner_scope = trio.CancelScope()

            async def run_owner() -> None:
                with owner_scope:
                    await owner.run()

            nursery.start_soon(run_owner)
            took: list[float] = []
            done = trio.Event()

            async def run_standby() -> None:
                await standby.acquire(waited.append)
                took.append(trio.current_time())
                done.set()

            nursery.start_soon(run_standby)
            await trio.sleep(5 * TTL)
            assert not took and not standby.may_send()  # the owner renews: the standby waits
            killed = trio.current_time()
            owner_scope.cancel()  # kill -9: no more renewals
            await done.wait()
            assert took[0] - killed <= TTL + TTL / 3
            assert standby.token == 2 and standby.predecessor == 1 and standby.may_send()
            assert trio.current_time() >= leases.rows["paper"].acquired
            nursery.cancel_scope.cancel()
    assert [w.owner for w in waited] == [A.owner]  # logged once per holder, not per poll
    taken = _of(events, "lease.taken_over")
    assert taken and taken[0]["previous_owner"] == A.owner and taken[0]["previous_fence"] == 1


async def test_a_renewal_that_finds_the_lease_taken_loses_it_for_good(
    autojump_clock: trio.testing.MockClock, events: list[dict[str, Any]]
) -> None:
    leases = MemoryLeases()
    owner = LeaseKeeper(leases, "paper", A, TTL)
    with trio.fail_after(1000):
        await owner.acquire()
        leases.down = True  # the owner is cut off; its lease expires
        async with trio.open_nursery() as nursery:
            await nursery.start(owner.run)
            await trio.sleep(TTL * 2 / 3 + 0.01)
            assert not owner.may_send()  # past the deadline: sending stopped, not lost yet
            assert not owner.lost.is_set()
            await trio.sleep(TTL)
            leases.down = False
            other = LeaseKeeper(leases, "paper", B, TTL)
            await other.acquire()  # the standby took it over meanwhile
            await owner.lost.wait()
    assert not owner.may_send() and other.token == 2
    assert _of(events, "lease.lost")[0]["reason"] == "taken"
    assert _of(events, "lease.unavailable")


async def test_an_outage_pauses_sending_and_a_renewal_nobody_preempted_resumes_it(
    autojump_clock: trio.testing.MockClock, events: list[dict[str, Any]]
) -> None:
    leases = MemoryLeases()
    owner = LeaseKeeper(leases, "paper", A, TTL)
    renewed: list[float] = []
    owner.on_renewed = lambda: renewed.append(trio.current_time())
    with trio.fail_after(1000):
        await owner.acquire()
        async with trio.open_nursery() as nursery:
            await nursery.start(owner.run)
            leases.down = True
            await trio.sleep(2 * TTL)
            assert not owner.may_send() and not owner.lost.is_set()
            leases.down = False
            await trio.sleep(TTL / 5)
            assert owner.may_send() and owner.token == 1
            nursery.cancel_scope.cancel()
    assert _of(events, "lease.renewed")


async def test_a_crashed_run_of_the_same_home_is_replaced_at_once_and_its_token_followed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    leases = MemoryLeases()
    await LeaseKeeper(leases, "paper", A, TTL).acquire()
    leases.gone.add(A.pid)
    restarted = LeaseKeeper(leases, "paper", Instance("hostA:300:later", A.home, 300), TTL)
    with trio.fail_after(1):
        got = await restarted.acquire()
    assert got.outcome is Outcome.TAKEN_OVER and restarted.predecessor == 1
    assert trio.current_time() == 0  # no wait for the expiry


async def test_a_clean_release_hands_the_lease_to_the_standby_without_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    leases = MemoryLeases()
    owner = LeaseKeeper(leases, "paper", A, TTL)
    await owner.acquire()
    await owner.release()
    assert not owner.may_send()
    with trio.fail_after(0.1):
        assert (await LeaseKeeper(leases, "paper", B, TTL).acquire()).row.token == 2


async def test_two_accounts_have_two_owners(autojump_clock: trio.testing.MockClock) -> None:
    leases = MemoryLeases()
    with trio.fail_after(1):
        a = await LeaseKeeper(leases, "ig:ACC1", A, TTL).acquire()
        b = await LeaseKeeper(leases, "ig:ACC2", B, TTL).acquire()
    assert a.ours and b.ours and a.row.token == b.row.token == 1


# -- no two owners, over random pauses -------------------------------------------------------
async def _race(seed: int, daemons: int) -> None:
    """``daemons`` keepers of one account; each call of each is delayed at random (a paused
    or partitioned process: up to twice the ttl), and each daemon is killed and restarted at
    random. At every instant at most one keeper may send, and only while the table says it
    holds a valid lease."""
    rng = random.Random(seed)
    leases = MemoryLeases(
        latency=lambda: (
            rng.choice([0.0, 0.0, 0.05, rng.uniform(0, 2 * TTL)]),
            rng.choice([0.0, 0.0, 0.05, rng.uniform(0, 2 * TTL)]),
        )
    )
    keepers: list[LeaseKeeper] = []
    sends = 0

    async def daemon(n: int) -> None:
        for life in range(1_000):
            me = Instance(f"host{n}:{life}:x", f"host{n}", 1000 * n + life)
            keeper = LeaseKeeper(leases, "paper", me, TTL)
            keepers.append(keeper)
            with trio.move_on_after(rng.uniform(0, 6 * TTL)):  # then killed
                await keeper.acquire()
                await keeper.run()
            keeper.deadline = -math.inf  # a killed process sends nothing
            await trio.sleep(rng.uniform(0, TTL))

    async def monitor() -> None:
        nonlocal sends
        while True:
            await trio.sleep(0.1)
            now = trio.current_time()
            senders = [k for k in keepers if k.may_send()]
            assert len(senders) <= 1, [k.me.owner for k in senders]
            holder = leases.holder("paper", now)
            for k in senders:
                assert holder is not None and holder.owner == k.me.owner
                assert holder.token == k.token and now < holder.expires - TTL / 3 + 1e-9
                sends += 1

    with trio.move_on_after(30 * TTL):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(monitor)
            for n in range(daemons):
                nursery.start_soon(daemon, n)
    assert sends > 0  # somebody did own the account


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), daemons=st.integers(2, 4))
def test_no_two_daemons_may_send_at_once_over_random_pauses(seed: int, daemons: int) -> None:
    trio.run(_race, seed, daemons, clock=trio.testing.MockClock(autojump_threshold=0))


# -- the gateway's deadline ------------------------------------------------------------------
async def test_the_gateway_sends_nothing_at_or_after_the_lease_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, broker, sink = MemoryStore(), ScriptedBroker(), Sink()
    trade = await _trade(store, broker, "D1")
    deadline = [trio.current_time() + 5.0]
    gw = _gateway(broker, store, deadline=lambda: deadline[0])
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            gw.submit(sink.target(trade, 1.1001))
            await gw.wait_idle()
            assert [c[1] for c in broker.calls] == [1.1001]
            await trio.sleep(5.0)  # the deadline passes unrenewed
            gw.submit(sink.target(trade, 1.1010))
            with trio.move_on_after(30.0) as waited:
                await gw.wait_idle()  # held back is not idle: a lockstep replay waits for it
            assert waited.cancelled_caught
            assert [c[1] for c in broker.calls] == [1.1001]
            assert gw.statistics().queued == 1
            deadline[0] = trio.current_time() + 5.0  # renewed
            gw.wake()
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert [c[1] for c in broker.calls] == [1.1001, 1.1010]
