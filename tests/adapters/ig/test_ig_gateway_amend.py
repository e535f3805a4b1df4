"""An IG amendment whose answer was lost, on the path production takes: the gateway sends it with
``IGBroker.amend_stop`` and, after a BrokerTimeout, re-reads the position (``get_position``)
before anything is sent again: an amendment that landed is confirmed, never re-sent blind."""

from __future__ import annotations

import math

import trio

from tests.adapters.ig.conftest import EURUSD, broker_for, fixed_clock, ig_sim
from tests.runtime.fakes import MemoryStore
from traild.adapters.ig.allowance import TradingPacer
from traild.adapters.ig.options import IGTimeouts
from traild.adapters.ig.rest import IGBroker
from traild.core.messages import Direction, Reason, TradeRecord
from traild.runtime.gateway import AmendTarget, Gateway
from traild.testing.ig_sim import SimMarket, SimPosition

DEAL = "DIBUY"


def _buy() -> SimPosition:
    return SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000, deal_id=DEAL)


async def _through_gateway(broker: IGBroker, level: float) -> tuple[list[float], list[str]]:
    """Move the BUY's stop to ``level`` as the daemon does; (confirmed levels, refusals)."""
    store = MemoryStore()
    trade = await store.add_trade(
        TradeRecord(DEAL, EURUSD, Direction.BUY, entry_price=1.095, sl_price=1.09)
    )
    assert trade.id is not None
    confirmed: list[float] = []
    failed: list[str] = []
    gateway = Gateway(broker, store, fixed_clock, retry_base=0.05, retry_max=0.2)
    assert isinstance(gateway.bucket, TradingPacer)  # IG's trading window paces it
    target = AmendTarget(
        trade.id, DEAL, EURUSD, level, 1.09, None, Reason.STAGE3, False,
        confirmed.append, failed.append, lambda a, b: a > b,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        gateway.submit(target)
        await gateway.wait_idle()
        nursery.cancel_scope.cancel()
    return confirmed, failed


async def test_an_amendment_whose_answer_was_lost_is_confirmed_by_a_read_not_resent() -> None:
    with trio.fail_after(10):
        async with (
            ig_sim(markets=[SimMarket(EURUSD, 1.1, 1.1001)], positions=[_buy()]) as sim,
            broker_for(sim, timeouts=IGTimeouts(request=0.5)) as broker,
        ):
            sim.delay("PUT", "positions/otc", math.inf, apply_first=True)
            confirmed, failed = await _through_gateway(broker, 1.0950)
    assert (confirmed, failed) == ([1.095], [])
    assert len(sim.requests_to("PUT", "positions/otc")) == 1
    assert len(sim.amendments) == 1


async def test_an_amendment_lost_before_ig_took_it_is_sent_again_after_the_read() -> None:
    with trio.fail_after(10):
        async with (
            ig_sim(markets=[SimMarket(EURUSD, 1.1, 1.1001)], positions=[_buy()]) as sim,
            broker_for(sim, timeouts=IGTimeouts(request=0.5)) as broker,
        ):
            sim.delay("PUT", "positions/otc", math.inf)  # lost before IG processed it
            confirmed, failed = await _through_gateway(broker, 1.0950)
            reads = sim.requests_to("GET", f"positions/{DEAL}")
    assert (confirmed, failed) == ([1.095], [])
    assert len(sim.requests_to("PUT", "positions/otc")) == 2
    assert len(sim.amendments) == 1
    assert len(reads) >= 2  # the stop re-read between the two PUTs


async def test_an_amendment_of_a_closed_position_is_refused_without_a_put() -> None:
    with trio.fail_after(10):
        async with (
            ig_sim(markets=[SimMarket(EURUSD, 1.1, 1.1001)], positions=[_buy()]) as sim,
            broker_for(sim, timeouts=IGTimeouts(request=0.5)) as broker,
        ):
            await broker.open_positions()
            sim.close_position(DEAL)
            confirmed, failed = await _through_gateway(broker, 1.0950)
    assert (confirmed, failed) == ([], ["POSITION_NOT_FOUND"])
    assert sim.requests_to("PUT", "positions/otc") == []
