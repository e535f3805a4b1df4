"""The IG session: login, 401 handling, refresh before expiry, account switch, secrecy."""

from __future__ import annotations

import math

import pytest
import trio
from pydantic import SecretStr

from tests.adapters.ig.conftest import (
    API_KEY,
    EURUSD,
    IDENTIFIER,
    PASSWORD,
    broker_for,
    ig_sim,
    wait_until,
)
from traild.adapters.ig.http import Secret
from traild.adapters.ig.options import IGCredentials, IGTimeouts
from traild.adapters.ig.session import IGSession
from traild.core.errors import BrokerRejected, BrokerTimeout
from traild.core.messages import PositionOpened
from traild.testing.ig_sim import SimMarket, SimPosition


async def test_login_uses_version_2_and_sends_the_tokens_on_every_request() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim, broker_for(sim) as broker:
            await broker.open_positions()
    login, *rest = sim.requests
    assert (login.method, login.path, login.headers["version"]) == (
        "POST",
        "/gateway/deal/session",
        "2",
    )
    assert login.json() == {"identifier": IDENTIFIER, "password": PASSWORD}
    assert login.headers["x-ig-api-key"] == API_KEY
    for request in rest:
        assert request.headers["x-ig-api-key"] == API_KEY
        assert request.headers["cst"].startswith("CST")
        assert request.headers["x-security-token"].startswith("XST")
    assert rest[-1].method == "DELETE"  # logout on exit


async def test_expired_tokens_mid_run_log_in_again_and_polling_carries_on() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.095, stop=1.09)
        async with ig_sim(positions=[buy]) as sim, broker_for(sim) as broker:
            events: list[object] = []

            async def emit(event: object) -> None:
                events.append(event)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(broker.run, emit)
                await wait_until(lambda: len(events) == 1)
                sim.expire_tokens()
                second = sim.add_position(SimPosition(EURUSD, "SELL", 1.105, stop=1.11))
                await wait_until(lambda: len(events) == 2)
                nursery.cancel_scope.cancel()
    assert sim.logins == 2
    assert isinstance(events[1], PositionOpened) and events[1].position.deal_id == second


async def test_a_401_is_retried_once_after_login_and_not_again() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim, broker_for(sim) as broker:
            sim.fail_next("GET", "positions", 401, "error.security.client-token-invalid", times=2)
            with pytest.raises(BrokerRejected, match=r"401 .*client-token-invalid"):
                await broker.open_positions()
            assert await broker.open_positions() == []
    assert sim.logins == 2
    assert len(sim.requests_to("GET", "positions")) == 3


async def test_amendment_refused_for_an_expired_token_is_sent_again_after_login() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.095, stop=1.09)
        async with (
            ig_sim(markets=[SimMarket(EURUSD, 1.1, 1.1001)], positions=[buy]) as sim,
            broker_for(sim) as broker,
        ):
            await broker.open_positions()
            sim.fail_next("PUT", "positions/otc", 401, "error.security.client-token-invalid")
            confirmation = await broker.amend_stop(buy.deal_id, 1.0950, None)
    assert confirmation.accepted
    assert len(sim.requests_to("PUT", "positions/otc")) == 2
    assert len(sim.amendments) == 1


async def test_session_is_renewed_before_its_tokens_expire() -> None:
    with trio.fail_after(10):
        async with (
            ig_sim(token_ttl=0.5) as sim,
            broker_for(sim, timeouts=IGTimeouts(request=2.0, session_refresh=0.1)) as broker,
        ):
            await broker.open_positions()
            await trio.sleep(0.15)
            await broker.open_positions()
    assert sim.logins == 2
    first, second = sim.requests_to("GET", "positions")
    assert first.headers["cst"] != second.headers["cst"]  # renewed before, not after, a 401


async def test_failed_login_names_igs_error_code_and_no_secret() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim:
            with pytest.raises(BrokerRejected) as info:
                async with broker_for(sim, password="wrong-" + PASSWORD):
                    pass
    message = str(info.value)
    assert "error.security.invalid-details" in message
    for secret in (PASSWORD, "wrong-" + PASSWORD, API_KEY, IDENTIFIER):
        assert secret not in message
        assert secret not in repr(info.value)


async def test_wrong_api_key_is_refused_without_echoing_it() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim:
            with pytest.raises(BrokerRejected, match="api-key-invalid") as info:
                async with broker_for(sim, api_key="not-the-key-123"):
                    pass
    assert "not-the-key-123" not in str(info.value)


async def test_login_that_times_out_is_a_broker_timeout() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim:
            sim.delay("POST", "session", math.inf)
            with pytest.raises(BrokerTimeout):
                async with broker_for(sim, timeouts=IGTimeouts(request=0.5)):
                    pass


async def test_configured_account_is_switched_to_after_login() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.095, stop=1.09)
        async with ig_sim(positions=[buy]) as sim, broker_for(sim, account_id="SIMACC2") as broker:
            assert await broker.open_positions() == []  # the sim's positions are on SIMACC1
            auth = await broker.stream_auth()
    [switch] = sim.requests_to("PUT", "session")
    assert switch.json() == {"accountId": "SIMACC2", "defaultAccount": False}
    assert auth.user == "SIMACC2"


async def test_stream_auth_carries_the_account_and_current_tokens() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim, broker_for(sim) as broker:
            auth = await broker.stream_auth()
            refreshed = await broker.stream_auth(refused=auth)
            again = await broker.stream_auth(refused=auth)  # refused before the last login
    login = sim.requests_to("POST", "session")
    assert len(login) == 2
    assert auth.endpoint == sim.stream_url and auth.user == "SIMACC1"
    assert auth.password.startswith("CST-CST") and "|XST-XST" in auth.password
    assert refreshed.password != auth.password
    assert again == refreshed and refreshed.generation == auth.generation + 1
    assert "CST" not in repr(auth)


async def test_secrets_stay_out_of_reprs() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim:
            credentials = IGCredentials(
                sim.base_url, SecretStr(API_KEY), IDENTIFIER, Secret(PASSWORD)
            )
            session = IGSession(credentials, timeout=1.0)
            async with session:
                text = repr(session) + str(Secret(PASSWORD)) + repr(broker_for(sim))
    for secret in (API_KEY, PASSWORD):
        assert secret not in text
