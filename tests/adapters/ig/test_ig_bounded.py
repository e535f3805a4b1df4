"""What the IG adapter keeps per deal or per request stays bounded: a closed deal is forgotten,
and each table has a cap for the deals it never sees close (refused positions, a missed close)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.adapters.ig.conftest import EURUSD, TEST_EVENTS, broker_for, ig_sim, wait_until
from traild.adapters.ig.lightstreamer import LightstreamerClient
from traild.adapters.ig.markets import MarketRules
from traild.adapters.ig.options import IGCredentials, IGEvents, IGMarkets, IGTakeOver
from traild.adapters.ig.positions import DEALS_KEPT, IGPositions
from traild.adapters.ig.session import IGSession, StreamAuth
from traild.adapters.ig.tlcp import MAX_SUBSCRIPTIONS
from traild.adapters.ig.trade import _CONFIRMS_KEPT, TradeEvents
from traild.adapters.ig.wire import StopFlags
from traild.core.instruments import InstrumentTable
from traild.core.messages import Direction, Position, PositionClosed
from traild.testing.ig_sim import SimMarket, SimPosition

ROOMY = {"trading_allowance": 10_000, "account_allowance": 10_000, "application_allowance": 10_000}


def _book() -> IGPositions:
    session = IGSession(IGCredentials("http://127.0.0.1:9", "key", "id", "pw"))
    markets = MarketRules(session, InstrumentTable(), IGMarkets())
    return IGPositions(session, markets, IGTakeOver())


def _position(deal: str) -> Position:
    return Position(deal, EURUSD, Direction.BUY, 1.0, 1.1, 1.098, 1.12)


def _touch_everything(book: IGPositions, deal: str) -> None:
    book.remember(_position(deal), StopFlags(guaranteed=True))
    book.note_sent(deal, 1.099)
    book.refuse_once(deal, "GUARANTEED_STOP_NOT_MANAGED", f"{deal} refused")
    book.warn_limit_once(deal, EURUSD, 1.12, None)


def test_every_per_deal_table_is_capped_after_many_deals() -> None:
    book = _book()
    for i in range(3 * DEALS_KEPT):
        _touch_everything(book, f"DI{i:06d}")
    assert set(book.sizes().values()) == {DEALS_KEPT}
    assert f"DI{3 * DEALS_KEPT - 1:06d}" in book.deals  # the newest are kept
    assert "DI000000" not in book.deals


def test_a_closed_deal_leaves_nothing_behind() -> None:
    book = _book()
    for i in range(50):
        _touch_everything(book, f"DI{i}")
    for i in range(50):
        book.forget(f"DI{i}")
    assert set(book.sizes().values()) == {0}


def test_pushed_confirmations_and_refused_items_are_capped() -> None:
    async def auth(refused: StreamAuth | None) -> StreamAuth:
        raise AssertionError("never connects")

    stream = LightstreamerClient(auth)
    events = TradeEvents(_book(), stream, IGEvents(), lambda: None)  # type: ignore[arg-type,return-value]
    for i in range(4 * _CONFIRMS_KEPT):
        events._on_confirm({"dealReference": f"REF{i}", "dealStatus": "ACCEPTED"})
    assert len(events._confirms) == _CONFIRMS_KEPT
    for i in range(4 * MAX_SUBSCRIPTIONS):
        stream.refused_item(f"PRICE:X:{i}", "17", "refused")
    assert len(stream.rejected) == MAX_SUBSCRIPTIONS


@pytest.mark.parametrize(
    "events",
    [TEST_EVENTS, IGEvents(reconcile_interval=3600.0, poll_interval=3600.0)],
    ids=["polled", "streamed"],
)
async def test_many_deals_opened_amended_and_closed_leave_the_tables_empty(
    events: IGEvents,
) -> None:
    closed: list[Any] = []

    async def emit(event: Any) -> None:
        if isinstance(event, PositionClosed):
            closed.append(event)

    with trio.fail_after(30):
        async with (
            ig_sim(markets=[SimMarket(EURUSD, 1.1000, 1.1001)], **ROOMY) as sim,
            broker_for(sim, events=events) as broker,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(broker.run, emit)
            for _ in range(4):
                deals = [
                    sim.add_position(SimPosition(EURUSD, "BUY", 1.095, stop=1.09, limit=1.12))
                    for _ in range(10)
                ]
                await wait_until(lambda: len(broker.events.known) == 10)
                for deal in deals:
                    await broker.amend_stop(deal, 1.0905, 1.13)  # limit differs: warned
                for deal in deals:
                    sim.close_position(deal)
                await wait_until(lambda: len(closed) % 10 == 0 and not broker.events.known)
            nursery.cancel_scope.cancel()
    assert len(closed) == 40
    assert set(broker.positions.sizes().values()) == {0}
