"""Stopping and staying up: the drain takes no new work but lets answers arrive; a crashing
helper task or broker event handler never ends the daemon (issue #19, defect 8)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
import trio.testing
from loguru import logger

from tests.runtime.fakes import ScriptedBroker, one_buy, one_buy_target
from tests.runtime.test_supervisor import Rig, _run
from traild.core.errors import BrokerConfigRefused, ConfigError
from traild.core.messages import Direction, PositionClosed
from traild.runtime.gateway import Gateway
from traild.runtime.tasks import supervised

EPIC = "CS.D.EURUSD.MINI.IP"
T0 = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)


async def test_a_closed_gateway_takes_no_target_but_lets_the_one_in_flight_conclude(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = ScriptedBroker(latency=2.0)
    store = await one_buy(broker)
    gw = Gateway(broker, store, lambda: T0)
    confirmed: list[float] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            assert gw.submit(one_buy_target(1.1010, confirmed))
            await trio.sleep(0.5)  # in flight
            assert gw.submit(one_buy_target(1.1020, confirmed))  # queued behind it
            assert gw.close() == 1  # the queued one is dropped: it was never sent
            assert not gw.submit(one_buy_target(1.1030, confirmed))
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert confirmed == [1.1010]  # the answer in flight arrived; nothing else was sent
    assert [c[1] for c in broker.calls] == [1.1010]
    assert store.amendments[1].state.value == "confirmed"


async def test_a_crashing_task_is_restarted_with_back_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs: list[float] = []

    async def flaky() -> None:
        runs.append(trio.current_time())
        if len(runs) < 3:
            raise RuntimeError("bug in a stream handler")

    with trio.fail_after(60):
        await supervised("stream", flaky, backoff=(1.0, 10.0))
    assert len(runs) == 3
    assert runs[1] - runs[0] == pytest.approx(1.0)
    assert runs[2] - runs[1] == pytest.approx(2.0)


async def test_a_configuration_error_still_ends_the_daemon(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def refused() -> None:
        raise ConfigError(["broker.ig.password: refused by IG"])

    with pytest.raises(ConfigError):
        await supervised("broker", refused)


async def test_a_broker_event_that_fails_costs_only_that_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rig = Rig()
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800)
    records: list[str] = []
    sink = logger.add(lambda m: records.append(m.record["extra"].get("event", "")), level="ERROR")

    async def body() -> None:
        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("bug")

        rig.sup.stops.on_amended = broken  # type: ignore[method-assign]
        from traild.core.messages import PositionAmended

        await rig.sup.on_broker_event(PositionAmended("D1", 1.0999, None, T0))
        await rig.sup.on_broker_event(PositionClosed("D1", 1.0981, "stop", T0))

    try:
        await _run(rig, body)
    finally:
        logger.remove(sink)
    assert "broker.event_failed" in records
    assert rig.store.trades[1].status.value == "closed"  # the next event was handled


async def test_a_broker_refusing_the_configuration_is_never_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A refused login restarted would log in again and again (IG locks the account)."""
    calls: list[int] = []

    async def refused() -> None:
        calls.append(1)
        raise BrokerConfigRefused("IG refused the login: error.security.invalid-details")

    with pytest.raises(BrokerConfigRefused):
        await supervised("broker", refused)
    assert calls == [1]
