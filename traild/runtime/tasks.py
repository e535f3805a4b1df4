"""Long-running helper tasks that an unexpected error must not end, and the background
nursery that work started from synchronous callbacks runs in.

A stream handler, the housekeeping loops and the broker's event stream are restarted with
back-off when they raise (``task.crashed`` logged with the error); only a configuration
error or a broker's refusal of the configuration (credentials, protocol) — what a restart
cannot fix — is let through to end the daemon (exit 78).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
from loguru import logger

from traild.core.errors import BrokerConfigRefused, ConfigError

BACKOFF = (1.0, 60.0)  # first and longest wait before a crashed task is started again


async def supervised(
    name: str, run: Callable[[], Awaitable[None]], backoff: tuple[float, float] = BACKOFF
) -> None:
    """Run ``run()`` until it returns; restart it after an unexpected error (back-off doubling
    from ``backoff[0]`` up to ``backoff[1]``, reset after a run that lasted longer than that)."""
    delay, crashes = backoff[0], 0
    while True:
        started = trio.current_time()
        try:
            await run()
            return
        except (ConfigError, BrokerConfigRefused):
            raise  # a restart repeats the refusal (IG locks an account after failed logins)
        except Exception as exc:
            crashes += 1
            if trio.current_time() - started > backoff[1]:
                delay = backoff[0]  # it ran well for a while: a fresh failure, not a loop
            logger.bind(
                event="task.crashed",
                task=name,
                crashes=crashes,
                retry_in=delay,
                error=f"{exc.__class__.__name__}: {exc}",
            ).opt(exception=exc).error("task {} crashed; restarting it", name)
            await trio.sleep(delay)
            delay = min(delay * 2, backoff[1])


class Background:
    """A nursery that work started from synchronous callbacks (a crashed actor, a drifted
    stop, a closed bar) goes to once it is open; before that, such work is not started."""

    def __init__(self) -> None:
        self.nursery: trio.Nursery | None = None

    @property
    def open(self) -> bool:
        return self.nursery is not None

    def soon(self, run: Callable[..., Awaitable[object]], *args: object) -> None:
        """``run(*args)`` in the nursery, if it is open (else nothing)."""
        if self.nursery is not None:
            self.nursery.start_soon(run, *args)
