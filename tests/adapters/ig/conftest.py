"""Shared setup of the IG adapter tests: credentials, the loopback sim, a log capture."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import trio
from loguru import logger

from traild.adapters.ig.options import IGCredentials, IGEvents, IGRetry, IGTimeouts
from traild.adapters.ig.rest import IGBroker
from traild.core.instruments import InstrumentTable
from traild.testing.ig_sim import IGSim, open_ig_sim

EURUSD = "CS.D.EURUSD.MINI.IP"
GBPUSD = "CS.D.GBPUSD.MINI.IP"
USDJPY = "CS.D.USDJPY.MINI.IP"
CEEM = "CS.D.EURUSD.CEEM.IP"
API_KEY = "apikey-9f3c2a71d8e4"
IDENTIFIER = "trader-one"
PASSWORD = "pa55-w0rd-s3cret"
T0 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)


def fixed_clock() -> datetime:
    return T0


@asynccontextmanager
async def ig_sim(**options: Any) -> AsyncIterator[IGSim]:
    """The loopback IG with the test credentials."""
    options.setdefault("clock", fixed_clock)
    async with open_ig_sim(
        api_key=API_KEY, identifier=IDENTIFIER, password=PASSWORD, **options
    ) as sim:
        yield sim


@contextmanager
def sim_in_thread(**options: Any) -> Iterator[IGSim]:
    """The sim on its own trio loop in a thread, so the CLI can run trio.run itself."""
    ready, stop = threading.Event(), threading.Event()
    box: dict[str, IGSim] = {}
    options.setdefault("clock", lambda: datetime.now(UTC))  # a live account's clock

    async def serve() -> None:
        with trio.fail_after(30):
            async with ig_sim(**options) as sim:
                box["sim"] = sim
                ready.set()
                while not stop.is_set():  # noqa: ASYNC110 (a thread's event, not trio's)
                    await trio.sleep(0.01)

    thread = threading.Thread(target=trio.run, args=(serve,))
    thread.start()
    try:
        assert ready.wait(10)
        yield box["sim"]
    finally:
        stop.set()
        thread.join(30)


# Short test timings; a test that changes one group builds it from these (``replace``).
TEST_TIMEOUTS = IGTimeouts(request=2.0)
TEST_RETRY = IGRetry(confirm_interval=0.005)
TEST_EVENTS = IGEvents(use_stream=False, poll_interval=0.01)  # polling unless a test streams
STREAMING = replace(TEST_EVENTS, use_stream=True)


def broker_for(
    sim: IGSim,
    *,
    api_key: str | Any = API_KEY,
    identifier: str = IDENTIFIER,
    password: str | Any = PASSWORD,
    account_id: str | None = None,
    **options: Any,
) -> IGBroker:
    """An IGBroker pointed at the sim with short test timeouts (``options``: IGBroker's)."""
    options.setdefault("timeouts", TEST_TIMEOUTS)
    options.setdefault("retry", TEST_RETRY)
    options.setdefault("events", TEST_EVENTS)
    options.setdefault("clock", fixed_clock)
    credentials = IGCredentials(sim.base_url, api_key, identifier, password, account_id)
    return IGBroker(credentials, instruments=InstrumentTable(), **options)


async def wait_until(predicate: Callable[[], bool], step: float = 0.005) -> None:
    """Poll ``predicate`` (callers bound the wait with trio.fail_after).

    Polling, not an Event: the state watched (request logs, counters) belongs to the sim and
    to the adapters under test, which have no reason to signal tests.
    """
    while not predicate():  # noqa: ASYNC110
        await trio.sleep(step)


async def collect(channel: trio.MemoryReceiveChannel[Any], count: int) -> list[Any]:
    return [await channel.receive() for _ in range(count)]


Emit = Callable[[Any], Awaitable[None]]


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every loguru record (message and bound fields) plus stdlib records (httpx, httpcore)."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="TRACE", format="{message} {extra}")
    handler = _ListHandler(lines)
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):  # in-process CLI tests ran traild.log, which quiets them
        caplog.set_level(logging.DEBUG, logger=name)
    logging.getLogger().addHandler(handler)
    yield lines
    logging.getLogger().removeHandler(handler)
    logger.remove(sink)
