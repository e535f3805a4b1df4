"""Credentials and session tokens never reach a log line or an error message."""

from __future__ import annotations

import math

import pytest
import trio

from tests.adapters.ig.conftest import (
    API_KEY,
    EURUSD,
    PASSWORD,
    broker_for,
    ig_sim,
    wait_until,
)
from traild.adapters.ig.options import IGStream, IGTimeouts
from traild.adapters.ig.rest import IGBroker
from traild.adapters.ig.stream import IGStreamFeed
from traild.core.errors import BrokerError
from traild.core.messages import Tick
from traild.testing.ig_sim import IGSim, SimMarket, SimPosition


async def test_no_secret_in_logs_or_errors_through_a_whole_session(log_lines: list[str]) -> None:
    errors: list[BaseException] = []
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.095, stop=1.09, limit=1.12)
        async with (
            ig_sim(markets=[SimMarket(EURUSD, 1.1, 1.1001)], positions=[buy]) as sim,
            broker_for(
                sim, timeouts=IGTimeouts(request=0.5), stream=IGStream(backoff_initial=0.01)
            ) as broker,
        ):
            await broker.open_positions()
            sim.expire_tokens()  # 401 -> login again
            await broker.amend_stop(buy.deal_id, 1.0950, 1.12)
            await _stream_until_reconnected(sim, broker)
            sim.fail_next(
                "PUT", "positions/otc", 403, "error.public-api.exceeded-api-key-allowance"
            )
            sim.delay("GET", "markets", math.inf)

            async def failing_poll() -> None:
                sim.fail_next("GET", "positions", 500, "system.error")
                await broker.open_positions()

            for call in (
                lambda: broker.amend_stop(buy.deal_id, 1.0955, 1.12),
                failing_poll,
                lambda: broker.session.request("GET", "markets/X", version=3),
            ):
                try:
                    await call()
                except BrokerError as exc:
                    errors.append(exc)
            with pytest.raises(BrokerError) as failed_login:
                async with broker_for(sim, password="nope-" + PASSWORD):
                    pass
            errors.append(failed_login.value)
    secrets = {API_KEY, PASSWORD, "nope-" + PASSWORD}
    for request in sim.requests:
        secrets.update(v for k, v in request.headers.items() if k in ("cst", "x-security-token"))
        for form in request.form() if request.path.startswith("/lightstreamer/create") else []:
            secrets.add(form["LS_password"])
    assert len(secrets) > 6 and len(errors) == 4
    text = "\n".join(log_lines) + "\n".join(f"{e}\n{e!r}" for e in errors)
    assert "feed.connected" in text and "HTTP Request" in text  # both log worlds captured
    leaked = sorted(s for s in secrets if s in text)
    assert leaked == [], [ln for ln in text.splitlines() if any(s in ln for s in leaked)]


async def _stream_until_reconnected(sim: IGSim, broker: IGBroker) -> None:
    """Stream, then drop the stream and expire the tokens: the feed must log in again."""
    feed = IGStreamFeed([EURUSD], broker.stream, account_id="SIMACC1")
    send, ticks = trio.open_memory_channel[Tick](10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.run, send.send)
        await ticks.receive()
        sim.drop_streams()
        sim.expire_tokens()
        await wait_until(lambda: feed.statistics().connects == 2)
        nursery.cancel_scope.cancel()
