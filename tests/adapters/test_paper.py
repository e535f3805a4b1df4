"""The paper broker: fills, exits on bid/ask with gaps, amendments, dealing rules, faults."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import trio
import trio.testing

from traild.adapters.paper import PaperBroker
from traild.core.errors import BrokerRejected, BrokerTimeout, BrokerUnavailable, RateLimited
from traild.core.instruments import InstrumentOverride, InstrumentTable
from traild.core.messages import (
    Confirmation,
    Direction,
    OpenRefused,
    OpenRequest,
    Position,
    PositionClosed,
    PositionOpened,
    Tick,
)
from traild.ports import Broker, BrokerEvent

EPIC = "CS.D.EURUSD.MINI.IP"
JPY = "CS.D.USDJPY.MINI.IP"
T0 = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)


def tick(bid: float, ask: float, second: float = 0.0, epic: str = EPIC) -> Tick:
    return Tick(epic, T0 + timedelta(seconds=second), bid, ask)


def broker(**kwargs: object) -> PaperBroker:
    return PaperBroker(deal_prefix="T-", **kwargs)  # type: ignore[arg-type]


def opened(b: PaperBroker, request: OpenRequest, bid: float, ask: float) -> Position:
    """Submit ``request`` and fill it with one tick (no background task needed)."""
    deal_id = b.submit_open(request)
    events = b.on_tick(tick(bid, ask))
    assert [type(e) for e in events] == [PositionOpened]
    assert isinstance(events[0], PositionOpened)
    assert events[0].position.deal_id == deal_id
    return events[0].position


def buy(stop_pips: float | None = 20, limit_pips: float | None = None) -> OpenRequest:
    return OpenRequest(EPIC, Direction.BUY, 1.0, stop_pips=stop_pips, limit_pips=limit_pips)


def sell(stop_pips: float | None = 20, limit_pips: float | None = None) -> OpenRequest:
    return OpenRequest(EPIC, Direction.SELL, 1.0, stop_pips=stop_pips, limit_pips=limit_pips)


def test_paper_broker_satisfies_the_broker_port() -> None:
    port: Broker = broker()
    assert port.allowance_per_minute() is None


# -- fills -------------------------------------------------------------------------------------


def test_buy_fills_at_the_ask_of_the_next_tick_with_stop_and_limit_in_pips() -> None:
    b = broker()
    pos = opened(b, buy(stop_pips=20, limit_pips=40.5), 1.10000, 1.10012)
    assert pos.level == 1.10012
    assert pos.stop == 1.09812
    assert pos.limit == 1.10417
    assert pos.opened_at == T0
    assert pos.deal_id == "T-000001"


def test_sell_fills_at_the_bid_and_mirrors_stop_and_limit() -> None:
    b = broker()
    pos = opened(b, sell(stop_pips=15, limit_pips=30), 1.10000, 1.10012)
    assert (pos.level, pos.stop, pos.limit) == (1.1, 1.1015, 1.097)


def test_jpy_pair_uses_its_own_pip_and_tick() -> None:
    b = broker()
    request = OpenRequest(JPY, Direction.BUY, 2.0, stop_pips=12.5, deal_id="J1")
    b.submit_open(request)
    [event] = b.on_tick(tick(150.000, 150.012, epic=JPY))
    assert isinstance(event, PositionOpened)
    assert (event.position.level, event.position.stop) == (150.012, 149.887)


def test_absolute_stop_and_limit_and_requested_deal_id_are_used() -> None:
    b = broker()
    request = OpenRequest(EPIC, Direction.BUY, 1.0, stop=1.0950, limit=1.1100, deal_id="DEAL-7")
    pos = opened(b, request, 1.1, 1.1001)
    assert (pos.deal_id, pos.stop, pos.limit) == ("DEAL-7", 1.095, 1.11)


def test_open_waits_only_for_a_tick_of_its_own_epic() -> None:
    b = broker()
    b.submit_open(buy())
    assert b.on_tick(tick(150.0, 150.01, epic=JPY)) == []
    assert b.statistics().pending_opens == 1
    assert len(b.on_tick(tick(1.1, 1.1001))) == 1
    assert b.statistics().pending_opens == 0


async def test_open_position_returns_the_fill_once_the_tick_arrives() -> None:
    b = broker()
    result: list[Position] = []

    async def open_it() -> None:
        result.append(await b.open_position(buy()))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_it)
            await trio.testing.wait_all_tasks_blocked()
            assert result == []
            b.on_tick(tick(1.2, 1.2002))
    assert result[0].level == 1.2002
    assert await b.get_position(result[0].deal_id) == result[0]
    assert await b.open_positions() == result


async def test_open_with_a_stop_on_the_wrong_side_is_refused() -> None:
    b = broker()
    failures: list[BaseException] = []

    async def open_it() -> None:
        try:
            await b.open_position(OpenRequest(EPIC, Direction.BUY, 1.0, stop=1.2005))
        except BrokerRejected as exc:
            failures.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_it)
            await trio.testing.wait_all_tasks_blocked()
            [refused] = b.on_tick(tick(1.2, 1.2002))
    assert isinstance(refused, OpenRefused)
    assert refused.reason == "stop on the wrong side of the market" and refused.ts == T0
    assert "wrong side" in str(failures[0])
    assert await b.open_positions() == []
    assert b.statistics().opens_rejected == 1


def test_open_closer_than_the_minimum_distance_is_refused() -> None:
    b = broker(min_stop_distance_pips=5)
    deal_id = b.submit_open(buy(stop_pips=4))
    [refused] = b.on_tick(tick(1.1, 1.1))
    assert isinstance(refused, OpenRefused) and refused.deal_id == deal_id
    assert refused.reason.startswith("stop too close")
    assert b.statistics().opens_rejected == 1


def test_duplicate_deal_ids_and_unknown_instruments_are_refused() -> None:
    b = broker()
    b.submit_open(OpenRequest(EPIC, Direction.BUY, 1.0, deal_id="D"))
    with pytest.raises(BrokerRejected, match="duplicate"):
        b.submit_open(OpenRequest(EPIC, Direction.SELL, 1.0, deal_id="D"))
    with pytest.raises(BrokerRejected, match="unknown instrument"):
        b.submit_open(OpenRequest("CS.D.NOPE.MINI.IP", Direction.BUY, 1.0))


# -- exits ----------------------------------------------------------------------------------


def test_buy_stop_triggers_on_the_bid_at_the_level_exactly() -> None:
    b = broker()
    pos = opened(b, buy(stop_pips=10), 1.10000, 1.10010)  # stop 1.09910
    assert b.on_tick(tick(1.09911, 1.09950, 1)) == []
    [closed] = b.on_tick(tick(1.09910, 1.09920, 2))
    assert closed == PositionClosed(pos.deal_id, 1.0991, "stop", T0 + timedelta(seconds=2), False)
    assert b.statistics().closed_stop == 1


def test_buy_stop_gapped_through_fills_at_the_bid_and_is_flagged() -> None:
    b = broker()
    opened(b, buy(stop_pips=10), 1.10000, 1.10010)
    [closed] = b.on_tick(tick(1.09800, 1.09830, 3))
    assert isinstance(closed, PositionClosed)
    assert (closed.exit_price, closed.reason, closed.gap) == (1.098, "stop", True)
    assert b.statistics().gap_fills == 1


def test_sell_stop_triggers_on_the_ask_not_the_bid() -> None:
    b = broker()
    opened(b, sell(stop_pips=10), 1.10000, 1.10010)  # stop 1.10100
    assert b.on_tick(tick(1.10100, 1.10099, 1)) == []  # bid at the stop: a SELL does not care
    [closed] = b.on_tick(tick(1.10090, 1.10100, 2))
    assert isinstance(closed, PositionClosed)
    assert (closed.exit_price, closed.gap) == (1.101, False)


def test_limits_fill_at_the_level_or_at_the_better_gapped_price() -> None:
    b = broker()
    a = opened(b, buy(stop_pips=10, limit_pips=10), 1.10000, 1.10010)  # limit 1.10110
    [closed] = b.on_tick(tick(1.10110, 1.10120, 1))
    assert closed == PositionClosed(a.deal_id, 1.1011, "limit", T0 + timedelta(seconds=1))
    s = opened(b, sell(stop_pips=10, limit_pips=10), 1.10000, 1.10010)  # limit 1.09900
    [closed] = b.on_tick(tick(1.09850, 1.09870, 2))
    assert closed == PositionClosed(s.deal_id, 1.0987, "limit", T0 + timedelta(seconds=2), True)


def test_buy_stop_between_bid_and_ask_at_the_fill_is_refused_as_wrong_side() -> None:
    b = broker()
    b.submit_open(buy(stop_pips=0.1))  # 1.10029: below the ask, above the bid it triggers on
    [refused] = b.on_tick(tick(1.1, 1.1003))
    assert isinstance(refused, OpenRefused)
    assert b.statistics().opens_rejected == 1


def test_without_a_stop_only_the_limit_closes() -> None:
    b = broker()
    opened(b, buy(stop_pips=None, limit_pips=5), 1.1, 1.1)
    assert b.on_tick(tick(1.0, 1.0, 1)) == []
    assert len(b.on_tick(tick(1.1005, 1.1006, 2))) == 1


# -- amendments -------------------------------------------------------------------------------


async def test_amend_sets_the_stop_and_keeps_the_limit_when_none_is_sent() -> None:
    b = broker()
    pos = opened(b, buy(stop_pips=20, limit_pips=50), 1.1, 1.1001)
    with trio.fail_after(5):
        conf = await b.amend_stop(pos.deal_id, 1.09955, None)
        assert conf.accepted and conf.level == 1.09955 and conf.reference
        after = await b.get_position(pos.deal_id)
    assert after is not None
    assert (after.stop, after.limit) == (1.09955, pos.limit)
    assert b.statistics().amend_accepted == 1


async def test_amend_can_move_the_limit_when_one_is_sent() -> None:
    b = broker()
    pos = opened(b, buy(stop_pips=20, limit_pips=50), 1.1, 1.1001)
    with trio.fail_after(5):
        assert (await b.amend_stop(pos.deal_id, 1.0999, 1.1100)).accepted
        after = await b.get_position(pos.deal_id)
    assert after is not None and after.limit == 1.11


@pytest.mark.parametrize(
    ("request_", "stop"),
    [(buy(), 1.10000), (buy(), 1.10050), (sell(), 1.10010), (sell(), 1.09990)],
)
async def test_stop_on_the_wrong_side_of_the_market_is_rejected(
    request_: OpenRequest, stop: float
) -> None:
    b = broker()
    pos = opened(b, request_, 1.10000, 1.10010)
    with trio.fail_after(5):
        conf = await b.amend_stop(pos.deal_id, stop, None)
    assert not conf.accepted and conf.level is None
    assert conf.reason == "stop on the wrong side of the market"
    assert (await b.get_position(pos.deal_id)) == pos


async def test_minimum_stop_distance_is_enforced_exactly_against_the_latest_quote() -> None:
    b = broker(min_stop_distance_pips=5)
    pos = opened(b, buy(), 1.10000, 1.10010)
    b.on_tick(tick(1.10100, 1.10110, 1))
    with trio.fail_after(5):
        too_close = await b.amend_stop(pos.deal_id, 1.10051, None)
        at_minimum = await b.amend_stop(pos.deal_id, 1.10050, None)
    assert not too_close.accepted and too_close.reason.startswith("stop too close")
    assert at_minimum.accepted


def test_minimum_distance_is_the_stricter_of_broker_and_instrument() -> None:
    table = InstrumentTable({"EURUSD": InstrumentOverride(min_stop_distance_pips=Decimal(8))})
    assert broker(instruments=table, min_stop_distance_pips=5).min_stop_distance_pips(EPIC) == 8
    assert broker(min_stop_distance_pips=5).min_stop_distance_pips(EPIC) == 5


async def test_latency_delays_the_answer_and_the_quote_at_arrival_decides(
    autojump_clock: trio.testing.MockClock,
) -> None:
    b = broker(latency_ms=250, min_stop_distance_pips=2)
    pos = opened(b, buy(), 1.10000, 1.10010)
    answers: list[Confirmation] = []
    waited: list[float] = []

    async def amend() -> None:
        start = trio.current_time()
        answers.append(await b.amend_stop(pos.deal_id, 1.09970, None))
        waited.append(trio.current_time() - start)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(amend)
            await trio.sleep(0.1)
            b.on_tick(tick(1.09985, 1.09995, 0.1))  # 1.5 pips from the stop by the time it lands
    assert waited == [pytest.approx(0.25)]
    assert not answers[0].accepted and "too close" in answers[0].reason


async def test_amending_a_position_closed_meanwhile_is_rejected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    b = broker(latency_ms=100)
    pos = opened(b, buy(stop_pips=10), 1.1, 1.1001)
    answers = []

    async def amend() -> None:
        answers.append(await b.amend_stop(pos.deal_id, 1.0995, None))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(amend)
            await trio.sleep(0.05)
            assert len(b.on_tick(tick(1.09, 1.0901, 1))) == 1
    assert not answers[0].accepted and "not found" in answers[0].reason


# -- faults ---------------------------------------------------------------------------------


async def test_injected_rejection_is_a_refusal_not_an_exception() -> None:
    b = broker(reject_rate=1.0)
    pos = opened(b, buy(), 1.1, 1.1001)
    with trio.fail_after(5):
        conf = await b.amend_stop(pos.deal_id, 1.0995, None)
    assert not conf.accepted and conf.reason == "simulated rejection"


async def test_injected_server_error_raises_broker_unavailable() -> None:
    b = broker(error_rate=1.0)
    pos = opened(b, buy(), 1.1, 1.1001)
    with trio.fail_after(5), pytest.raises(BrokerUnavailable):
        await b.amend_stop(pos.deal_id, 1.0995, None)
    assert b.statistics().unavailable == 1


@pytest.mark.parametrize(("share", "applied"), [(1.0, 1.0995), (0.0, 1.0981)])
async def test_timeout_leaves_the_outcome_unknown_applied_or_not(
    share: float, applied: float
) -> None:
    b = broker(timeout_rate=1.0, timeout_applied_share=share)
    pos = opened(b, buy(stop_pips=20), 1.1, 1.1001)
    with trio.fail_after(5), pytest.raises(BrokerTimeout):
        await b.amend_stop(pos.deal_id, 1.0995, None)
    after = await b.get_position(pos.deal_id)
    assert after is not None and after.stop == applied
    stats = b.statistics()
    assert (stats.timeouts, stats.timeouts_applied) == (1, int(share))


async def _outcomes(b: PaperBroker, deal_id: str, n: int) -> list[str]:
    out = []
    for i in range(n):
        try:
            conf = await b.amend_stop(deal_id, 1.0990 + i / 1e5, None)
            out.append("ok" if conf.accepted else "rejected")
        except (BrokerTimeout, BrokerUnavailable, RateLimited) as exc:
            out.append(type(exc).__name__)
    return out


async def test_fault_injection_is_deterministic_for_a_seed() -> None:
    rates = {"reject_rate": 0.2, "timeout_rate": 0.2, "error_rate": 0.2, "burst_rate": 0.05}
    runs = []
    for seed in (11, 11, 12):
        b = broker(seed=seed, **rates)
        pos = opened(b, buy(stop_pips=20), 1.1, 1.1001)
        with trio.fail_after(5):
            runs.append(await _outcomes(b, pos.deal_id, 60))
    assert runs[0] == runs[1] != runs[2]
    assert {"ok", "rejected", "BrokerTimeout", "BrokerUnavailable", "RateLimited"} <= set(runs[0])


async def test_rate_limit_bursts_refuse_whole_runs_of_calls() -> None:
    b = broker(burst_rate=0.1, burst_length=4, seed=3)
    pos = opened(b, buy(stop_pips=20), 1.1, 1.1001)
    with trio.fail_after(5):
        outcomes = await _outcomes(b, pos.deal_id, 200)
    runs, current = [], 0
    for outcome in outcomes[:-8]:  # a run cut by the end of the sample proves nothing
        if outcome == "RateLimited":
            current += 1
        elif current:
            runs.append(current)
            current = 0
    assert runs and all(r % 4 == 0 for r in runs)
    assert "ok" in outcomes


async def test_allowance_per_minute_is_enforced_with_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    b = broker(allowance_per_minute=3)
    pos = opened(b, buy(stop_pips=20), 1.1, 1.1001)
    with trio.fail_after(300):
        for _ in range(3):
            assert (await b.amend_stop(pos.deal_id, 1.0990, None)).accepted
            await trio.sleep(10)
        with pytest.raises(RateLimited) as info:
            await b.amend_stop(pos.deal_id, 1.0990, None)
        assert info.value.retry_after == pytest.approx(30)
        await trio.sleep(info.value.retry_after)
        assert (await b.amend_stop(pos.deal_id, 1.0990, None)).accepted
    assert b.statistics().rate_limited == 1


def test_invalid_fault_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="reject_rate"):
        PaperBroker(reject_rate=1.5)
    with pytest.raises(ValueError, match="allowance"):
        PaperBroker(allowance_per_minute=0)


# -- outside a tick -------------------------------------------------------------------------


async def test_run_reports_external_positions_and_manual_closes() -> None:
    b = broker()
    b.on_tick(tick(1.1, 1.1001))
    seen: list[BrokerEvent] = []

    async def emit(event: BrokerEvent) -> None:
        seen.append(event)

    external = Position("EXT-1", EPIC, Direction.SELL, 2.0, 1.1010, 1.1040, None, T0)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.run, emit)
            b.add_position(external)
            closed = b.close_position("EXT-1")
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert isinstance(seen[0], PositionOpened) and seen[0].position == external
    assert seen[1] == closed == PositionClosed("EXT-1", 1.1001, "manual", T0)
    assert b.statistics().closed_manual == 1


def test_drain_events_gives_out_of_tick_events_without_a_task() -> None:
    b = broker()
    b.on_tick(tick(1.1, 1.1001))
    b.add_position(Position("E", EPIC, Direction.BUY, 1.0, 1.09, 1.08, None, T0))
    b.close_position("E")
    assert [type(e) for e in b.drain_events()] == [PositionOpened, PositionClosed]
    assert b.drain_events() == []
    with pytest.raises(BrokerRejected):
        b.close_position("E")


def test_statistics_is_a_frozen_snapshot() -> None:
    b = broker()
    opened(b, buy(), 1.1, 1.1001)
    stats = b.statistics()
    assert (stats.ticks, stats.fills, stats.open_positions) == (1, 1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.fills = 5  # type: ignore[misc]
    b.on_tick(tick(1.0, 1.0001, 1))
    assert stats.open_positions == 1 and b.statistics().open_positions == 0


def test_a_restored_position_closes_on_its_first_crossing_after_the_open() -> None:
    """Issue #19 defect 7: ticks the exit guard lets through unchecked still pass the entry
    gate, so the first tick that reaches the stop after the open is not taken for the entry
    tick (and skipped) just because a tick before the open had been checked."""
    b = broker()
    opened = T0 + timedelta(seconds=5)
    b.add_position(Position("R", EPIC, Direction.BUY, 1.0, 1.1000, 1.0990, None, opened))
    assert b.on_tick(tick(1.0980, 1.0981, 1)) == []  # before the open (below the stop)
    assert b.on_tick(tick(1.1000, 1.1001, 5)) == []  # the entry tick (skipped)
    assert b.on_tick(tick(1.1001, 1.1002, 6)) == []  # inside the band: the guard's fast path
    closed = b.on_tick(tick(1.0985, 1.0986, 7))
    assert [type(e) for e in closed] == [PositionClosed]
    assert closed[0].ts == T0 + timedelta(seconds=7)


async def test_an_amendment_that_would_loosen_the_stop_is_refused() -> None:
    """Defence in depth: the paper broker refuses what traild must never ask."""
    b = broker()
    b.add_position(Position("L", EPIC, Direction.SELL, 1.0, 1.1000, 1.1020, None, T0))
    b.on_tick(tick(1.0990, 1.0991, 1))
    assert (await b.amend_stop("L", 1.1010, None)).accepted
    refused = await b.amend_stop("L", 1.1015, None)
    assert not refused.accepted and "loosen" in refused.reason
    position = await b.get_position("L")
    assert position is not None and position.stop == 1.1010
