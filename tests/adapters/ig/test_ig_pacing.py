"""One limiter per amendment PUT: IG's trading window paces the gateway, and the PUT spends the
slot the gateway waited for; IG's answer that the allowance is spent pauses that window."""

from __future__ import annotations

from datetime import UTC, datetime

import trio
import trio.testing

from tests.runtime.fakes import MemoryStore, ScriptedBroker
from traild.adapters.ig.allowance import Allowance, TradingPacer
from traild.core.messages import Confirmation, Direction, Position, Reason, TradeRecord
from traild.runtime.gateway import AmendTarget, Gateway
from traild.runtime.pacing import TokenBucket, pacer_for

EPIC = "CS.D.EURUSD.MINI.IP"
T0 = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)


class IGLikeBroker(ScriptedBroker):
    """Spends IG's trading window around each amendment as ``IGSession`` does for a PUT, and
    declares that window as its pacer (as ``IGBroker.pacer``)."""

    def __init__(self, allowance: Allowance, script: list[str] | None = None) -> None:
        super().__init__(script)
        self.allowance = allowance
        self.sent_at: list[float] = []

    def pacer(self) -> TradingPacer | None:
        return TradingPacer(self.allowance) if self.allowance.budget("trading") else None

    async def amend_stop(self, deal_id: str, stop: float, limit: float | None) -> Confirmation:
        slots = await self.allowance.spend(trading=True)
        self.sent_at.append(trio.current_time())
        try:
            return await super().amend_stop(deal_id, stop, limit)
        finally:
            self.allowance.done(slots)


def _window(trading: int | None) -> Allowance:
    allowance = Allowance(window=60.0)  # 2 of every allowance are kept back (``reserve``)
    allowance.configure(trading, None, None)
    return allowance


async def _amend_all(broker: IGLikeBroker, count: int, **gateway: int) -> Gateway:
    store = MemoryStore()
    targets = []
    for i in range(count):
        deal = f"D{i}"
        broker.positions[deal] = Position(deal, EPIC, Direction.BUY, 1.0, 1.1, 1.098, None)
        trade = await store.add_trade(
            TradeRecord(deal, EPIC, Direction.BUY, entry_price=1.1, sl_price=1.098)
        )
        assert trade.id is not None
        targets.append(
            AmendTarget(
                trade.id,
                deal,
                EPIC,
                1.1001,
                1.098,
                None,
                Reason.STAGE3,
                False,
                lambda level: None,
                lambda why: None,
                lambda a, b: a > b,
            )
        )
    gw = Gateway(broker, store, lambda: T0, retry_base=0.1, retry_max=1.0, **gateway)
    async with trio.open_nursery() as nursery:
        await nursery.start(gw.run)
        for target in targets:
            gw.submit(target)
        await gw.wait_idle()
        nursery.cancel_scope.cancel()
    return gw


async def test_the_trading_window_waits_for_room_without_counting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    allowance = _window(4)  # a budget of 2
    pacer = TradingPacer(allowance)
    for _ in range(5):
        await pacer.acquire()  # nothing spent: no wait
    assert trio.current_time() == 0
    for _ in range(2):
        allowance.done(await allowance.spend(trading=True))
    await allowance.spend(trading=False)  # the non-trading windows are other windows
    await pacer.acquire()
    assert trio.current_time() == 60.0  # a window after the answers


async def test_a_pause_holds_every_trading_request_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    allowance = _window(100)
    TradingPacer(allowance).pause(30.0)
    await allowance.spend(trading=False)
    assert trio.current_time() == 0
    await allowance.spend(trading=True)
    assert trio.current_time() == 30.0


async def test_the_gateway_paces_ig_amendments_with_igs_window_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = IGLikeBroker(_window(4))  # 2 amendments per 60 s
    with trio.fail_after(600):
        gw = await _amend_all(broker, 5, allowance_per_minute=1000, workers=1)
    assert isinstance(gw.bucket, TradingPacer)  # not a token bucket of 1000 a minute
    assert broker.sent_at == [0.0, 0.0, 60.0, 60.0, 120.0]
    for start in broker.sent_at:  # never more than IG's budget in any window
        assert sum(start <= t < start + 60.0 for t in broker.sent_at) <= 2


async def test_a_token_bucket_would_send_more_than_the_budget_in_one_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Why the bucket is not the authority for IG: a full bucket, then its refill within the
    same minute (up to twice the allowance in one window)."""
    bucket = TokenBucket(2)
    times = []
    for _ in range(3):
        await bucket.acquire()
        times.append(trio.current_time())
    assert times == [0.0, 0.0, 30.0]  # three inside one 60 s window for an allowance of two


async def test_workers_racing_for_the_last_slot_still_fit_the_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = IGLikeBroker(_window(4))
    with trio.fail_after(600):
        await _amend_all(broker, 6, workers=4)
    for start in broker.sent_at:
        assert sum(start <= t < start + 60.0 for t in broker.sent_at) <= 2


async def test_ig_refusing_the_allowance_pauses_igs_window_for_every_amendment(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = IGLikeBroker(_window(100), ["ratelimit"])  # retry_after 0.5 s
    with trio.fail_after(600):
        gw = await _amend_all(broker, 2, workers=1)
    assert gw.statistics().rate_limited == 1
    # D0 was refused at 0; D1 (never refused) waited out the pause in IG's window
    assert broker.sent_at[0] == 0.0 and broker.sent_at[1] >= 0.5
    assert [c[0] for c in broker.calls][:2] == ["D0", "D1"]


def test_without_a_known_allowance_the_gateways_bucket_is_the_one_limiter() -> None:
    async def main() -> None:
        unknown = IGLikeBroker(_window(None))
        assert isinstance(pacer_for(unknown, 60), TokenBucket)
        assert isinstance(pacer_for(ScriptedBroker(), 60), TokenBucket)
        assert isinstance(pacer_for(IGLikeBroker(_window(100)), 60), TradingPacer)

    trio.run(main)
