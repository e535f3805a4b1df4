"""Who this daemon is and which account it trades: the key and owner of its lease (issue #22).

The paper broker is one account (``paper``); IG's is ``ig:<account id>`` (``ig:<identifier>``
when no account id is configured: the login's default account). The owner is
``host:pid:start`` (shown in logs and ``traild lease``); the home is the host (with its
process namespace) and the state directory: a lease left by a process of the same home that
no longer exists is this daemon's own crashed run, taken over at once, and only then are the
journal's records of the previous tenure applied.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import trio
from loguru import logger

from traild.adapters import systemd
from traild.config.settings import Settings
from traild.core.lease import Instance, LeaseRow
from traild.runtime.lease import LeaseKeeper


def account_key(settings: Settings) -> str:
    """The broker account the daemon trades, as its lease's key."""
    broker = settings.broker
    if broker.kind == "ig":
        ig = broker.ig
        return f"ig:{ig.account_id or ig.identifier}"
    return broker.kind


def this_instance(state_dir: Path) -> Instance:
    """This process as a lease owner."""
    host = socket.gethostname() or "localhost"
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # containers sharing a host name differ
    except OSError:
        namespace = ""
    where = f"{namespace}\0{state_dir.expanduser().resolve()}"
    home = f"{host}:{hashlib.sha256(where.encode()).hexdigest()[:16]}"
    return Instance(owner=f"{host}:{os.getpid()}:{started}", home=home, pid=os.getpid())


async def stand_by(keeper: LeaseKeeper, signals: AsyncIterator[int]) -> bool:
    """Wait for the lease as a standby (READY to systemd with a STATUS naming the holder,
    watchdog pinged); False when SIGTERM/SIGINT (from ``signals``) stopped the wait."""
    ready = False

    def waiting(row: LeaseRow) -> None:
        nonlocal ready
        text = f"standby: {keeper.account} held by {row.owner} (token {row.token})"
        if not ready:
            ready = True
            systemd.ready(text)
        else:
            systemd.status(text)

    owned, stop = False, trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope, signals, stop)
        nursery.start_soon(_watchdog)
        await keeper.acquire(waiting)
        owned = True
        nursery.cancel_scope.cancel()
    if stop.is_set():  # the signal came as the claim succeeded: hand the lease back
        if owned:
            await keeper.release()
        return False
    if ready:
        systemd.status(f"taking over {keeper.account} (token {keeper.token})")
    return owned


async def _stop_on_signal(
    scope: trio.CancelScope, signals: AsyncIterator[int], stop: trio.Event
) -> None:
    async for signum in signals:
        if signum == signal.SIGHUP:
            continue  # a standby reads its configuration when it starts: restart it to change
        logger.bind(event="daemon.stopping", signal=signal.Signals(signum).name).info(
            "stopping while standing by"
        )
        systemd.stopping()
        stop.set()
        scope.cancel()
        return


async def _watchdog() -> None:
    interval = systemd.watchdog_interval()
    if interval is None:
        return
    while True:
        systemd.watchdog()
        await trio.sleep(interval)
