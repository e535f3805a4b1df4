"""Trades handed over by SQL while the daemon runs, with no initial stop (issues #19, #20)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio
import trio.testing

from tests.runtime.fakes import MemoryStore
from traild.adapters.paper import PaperBroker
from traild.config.settings import Settings
from traild.core.messages import Direction, Tick, TradeRecord
from traild.daemon.app import make_policy
from traild.runtime.gateway import Gateway
from traild.runtime.router import Router
from traild.runtime.supervisor import Supervisor

EPIC = "CS.D.EURUSD.MINI.IP"
T0 = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)


async def test_a_trade_inserted_while_a_paper_daemon_runs_is_learnt_and_trailed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = Settings()
    store = MemoryStore()
    paper = PaperBroker(settings.instrument_table(), deal_prefix="P-")
    gateway = Gateway(paper, store, lambda: T0, retry_base=0.1)
    router = Router(lockstep=True, settle=gateway.wait_idle)
    sup = Supervisor(
        make_policy(settings, paper),
        store,
        paper,
        gateway,
        router,
        settings.instrument_table(),
        {},
        lambda: T0,
    )
    now = T0

    async def tick(bid: float) -> None:
        nonlocal now
        now += timedelta(seconds=1)
        t = Tick(EPIC, now, bid, round(bid + 0.0001, 5))
        for event in paper.on_tick(t):
            await sup.on_broker_event(event)
        await router.publish(t)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            await nursery.start(sup.run)
            await tick(1.09990)
            # handed over by SQL, as the README documents: no initial_sl_price
            await store.add_trade(
                TradeRecord("SQL-1", EPIC, Direction.BUY, entry_price=1.1, sl_price=1.0985,
                            opened_at=now)
            )  # fmt: skip
            await sup.poll_store()
            assert paper.knows("SQL-1")
            for bid in (1.10000, 1.10050, 1.10100, 1.10120):
                await tick(bid)
            nursery.cancel_scope.cancel()
    trade = store.trades[1]
    assert trade.initial_sl_price == 1.0985  # recorded at adoption
    assert trade.sl_price == 1.10010  # the profit lock, confirmed by the paper book
    position = await paper.get_position("SQL-1")
    assert position is not None and position.stop == 1.10010
