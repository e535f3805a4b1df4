"""The standby wait of ``traild run`` (``traild/daemon/ownership.py``) on trio's MockClock, and the
lease's key and owner (issue #22)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio
import trio.testing

from traild.config.settings import Settings
from traild.core.lease import Instance
from traild.daemon.ownership import account_key, stand_by, this_instance
from traild.runtime.lease import LeaseKeeper
from traild.testing.leases import MemoryLeases

TTL = 3.0
HOLDER = Instance("other:1:x", "other:home", 1)


async def test_a_standby_stops_on_sigterm_without_owning_anything(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    leases = MemoryLeases()
    await LeaseKeeper(leases, "paper", HOLDER, 1000.0).acquire()
    send, receive = trio.open_memory_channel[int](1)
    keeper = LeaseKeeper(leases, "paper", this_instance(tmp_path), TTL)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_signal_later, send, signal.SIGHUP, 5.0)  # ignored
            nursery.start_soon(_signal_later, send, signal.SIGTERM, 20.0)
            assert await stand_by(keeper, receive) is False
    assert trio.current_time() == 20.0
    assert keeper.token is None and leases.rows["paper"].owner == HOLDER.owner


async def test_a_standby_owns_the_account_once_the_holders_lease_expires(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    leases = MemoryLeases()
    await LeaseKeeper(leases, "paper", HOLDER, TTL).acquire()  # and never renewed
    _, receive = trio.open_memory_channel[int](1)
    keeper = LeaseKeeper(leases, "paper", this_instance(tmp_path), TTL)
    with trio.fail_after(100):
        assert await stand_by(keeper, receive) is True
    assert TTL <= trio.current_time() <= TTL + TTL / 3
    assert keeper.token == 2 and keeper.may_send()


async def _signal_later(send: trio.MemorySendChannel[int], signum: int, after: float) -> None:
    await trio.sleep(after)
    await send.send(signum)


def test_the_lease_key_is_the_account_and_the_owner_names_host_pid_and_start(
    tmp_path: Path,
) -> None:
    paper = Settings()
    login = {"identifier": "me", "password": "x", "api_key": "y"}
    ig = Settings.model_validate({"broker": {"kind": "ig", "ig": {**login, "account_id": "A1"}}})
    default = Settings.model_validate({"broker": {"kind": "ig", "ig": login}})
    assert account_key(paper) == "paper" and account_key(ig) == "ig:A1"
    assert account_key(default) == "ig:me"  # the login's default account
    me = this_instance(tmp_path)
    host, pid, _ = me.owner.split(":", 2)
    assert int(pid) == os.getpid() == me.pid
    assert me.home.startswith(host + ":")
    assert this_instance(tmp_path).home == me.home != this_instance(tmp_path / "other").home
