"""Logging in to IG: a refusal of the credentials is final, anything else is waited out.

IG locks an account after repeated failed logins (``error.security.too-many-failed-attempts``,
IG REST reference, POST /session exceptions), so a refused login must never be retried.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio
import trio.testing

from tests.adapters.ig.conftest import API_KEY, PASSWORD, TEST_RETRY, broker_for, ig_sim
from traild.adapters.ig.options import IGRetry
from traild.core.errors import BrokerConfigRefused, BrokerUnavailable


def _logins(sim: object) -> int:
    return len(sim.requests_to("POST", "session"))  # type: ignore[attr-defined]


def _backoff(initial: float, longest: float) -> IGRetry:
    return replace(TEST_RETRY, login_backoff=(initial, longest))


@pytest.mark.parametrize(
    ("option", "code"),
    [
        ({"password": "wrong-" + PASSWORD}, "error.security.invalid-details"),
        ({"api_key": "not-the-key-123"}, "error.security.api-key-invalid"),
        ({"account_id": "NOSUCHACC"}, "error.switch.invalid-accountId"),
    ],
)
async def test_a_refused_login_is_a_config_refusal_sent_once(
    autojump_clock: trio.testing.MockClock, option: dict[str, str], code: str
) -> None:
    with trio.fail_after(600):
        async with ig_sim() as sim:
            with pytest.raises(BrokerConfigRefused, match=code) as info:
                async with broker_for(sim, retry=_backoff(1.0, 30.0), **option):
                    pass
    assert _logins(sim) == 1  # never retried: retries lock the account
    for secret in (PASSWORD, API_KEY, "not-the-key-123"):
        assert secret not in str(info.value)


async def test_too_many_failed_attempts_is_named_as_a_lock_of_the_account(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        async with ig_sim(lock_after_failures=2) as sim:
            for _ in range(2):
                with pytest.raises(BrokerConfigRefused, match="invalid-details"):
                    async with broker_for(sim, password="wrong"):
                        pass
            with pytest.raises(BrokerConfigRefused, match="too-many-failed-attempts"):
                async with broker_for(sim):  # the right password, too late
                    pass
    assert _logins(sim) == 3


async def test_a_login_failing_for_5xx_or_the_network_is_retried_with_a_capped_backoff(
    autojump_clock: trio.testing.MockClock, log_lines: list[str]
) -> None:
    with trio.fail_after(600):
        async with ig_sim() as sim:
            sim.fail_next("POST", "session", 503, "system.unavailable", times=4)
            start = trio.current_time()
            async with broker_for(sim, retry=_backoff(1.0, 3.0)) as broker:
                waited = trio.current_time() - start
                assert broker.account_id == "SIMACC1"
    assert _logins(sim) == 5
    assert waited == pytest.approx(1.0 + 2.0 + 3.0 + 3.0)
    failed = [line for line in log_lines if "'event': 'broker.login_failed'" in line]
    assert len(failed) == 4 and "'retry_in': 3.0" in failed[-1]


async def test_without_a_backoff_a_failing_login_raises_at_once() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim:
            sim.fail_next("POST", "session", 503, "system.unavailable")
            with pytest.raises(BrokerUnavailable):
                async with broker_for(sim):
                    pass


async def test_credentials_refused_mid_run_are_never_sent_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        async with ig_sim() as sim, broker_for(sim) as broker:
            sim.password = "changed-on-the-platform"
            sim.expire_tokens()  # the next request needs a new login, which IG refuses
            for _ in range(3):
                with pytest.raises(BrokerConfigRefused, match="invalid-details"):
                    await broker.open_positions()
                with pytest.raises(BrokerConfigRefused):
                    await broker.stream_auth()
    assert _logins(sim) == 2  # the first login and the one refused: no third
