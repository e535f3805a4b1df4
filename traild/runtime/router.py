"""Ticks by epic to actors through latest-wins mailboxes.

A mailbox never queues: it keeps the latest tick plus the most favourable bid and ask seen since
the actor last looked, so an actor that falls behind skips ticks without missing its best price.
In lockstep mode (deterministic replay) ``publish`` waits until every actor of the epic has
taken the tick and the ``settle`` hook (the gateway) is idle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from traild.core.messages import Tick


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    delivered: int
    coalesced: int
    waiting: bool


class Mailbox:
    """Latest-wins slot for one trade's ticks."""

    def __init__(self, skip: int = 0) -> None:
        self._skip = skip  # sequence number of a tick this mailbox must not receive
        self._latest: Tick | None = None
        self._max_bid: Tick | None = None
        self._min_ask: Tick | None = None
        self._count = 0
        self._ready = trio.Event()
        self._idle = trio.Event()
        self._idle.set()
        self.delivered = 0
        self.coalesced = 0

    def put_nowait(self, tick: Tick, seq: int = -1) -> None:
        """Store ``tick``; never blocks, never grows."""
        if seq == self._skip:
            return
        if self._latest is not None:
            self.coalesced += 1
        self._latest = tick
        if self._max_bid is None or tick.bid > self._max_bid.bid:
            self._max_bid = tick
        if self._min_ask is None or tick.ask < self._min_ask.ask:
            self._min_ask = tick
        self._count += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self._ready.set()

    async def get(self) -> list[Tick]:
        """Wait for ticks; return the extremes (if skipped ticks held them) then the latest."""
        while self._latest is None:
            await self._ready.wait()
        latest, hi, lo, count = self._latest, self._max_bid, self._min_ask, self._count
        self._latest = self._max_bid = self._min_ask = None
        self._count = 0
        self._ready = trio.Event()
        self.delivered += 1
        if count == 1 or hi is None or lo is None:
            return [latest]
        # A synthetic quote carrying the best bid and the best ask of the skipped ticks.
        extreme = Tick(latest.epic, latest.ts, hi.bid, lo.ask)
        return [extreme, latest]

    def done(self) -> None:
        """The actor finished the ticks it took."""
        if self._latest is None:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def is_idle(self) -> bool:
        return self._idle.is_set()

    def release(self) -> None:
        """Unblock lockstep waiters for good (the actor is gone)."""
        self._latest = None
        self._idle.set()

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(self.delivered, self.coalesced, self._latest is not None)


class Router:
    """Routes ticks to mailboxes by epic."""

    def __init__(
        self, lockstep: bool = False, settle: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.lockstep = lockstep
        self._settle = settle
        self._boxes: dict[str, dict[int, Mailbox]] = {}
        self.published = 0

    def subscribe(self, epic: str, key: int, skip_current_tick: bool = False) -> Mailbox:
        """A mailbox for ``key``; ``skip_current_tick``: not the tick being routed right now
        (a fill: the trade starts trailing with the next tick)."""
        box = Mailbox(self.published + 1 if skip_current_tick else 0)
        self._boxes.setdefault(epic, {})[key] = box
        return box

    def unsubscribe(self, epic: str, key: int) -> None:
        boxes = self._boxes.get(epic, {})
        box = boxes.pop(key, None)
        if box is not None:
            box.release()

    def mailbox(self, epic: str, key: int) -> Mailbox | None:
        return self._boxes.get(epic, {}).get(key)

    async def publish(self, tick: Tick) -> None:
        self.published += 1
        seq = self.published
        boxes = self._boxes.get(tick.epic)
        if boxes:
            for box in boxes.values():
                box.put_nowait(tick, seq)
        if self.lockstep:
            await self.settle(tick.epic)

    async def settle(self, epic: str | None = None) -> None:
        """Lockstep: wait until the mailboxes (of ``epic``, or all) are drained and the gateway
        is idle; repeat while the gateway's answers produce more work."""
        while True:
            groups = [self._boxes.get(epic, {})] if epic else list(self._boxes.values())
            busy = [b for g in groups for b in g.values() if not b.is_idle()]
            for box in busy:
                await box.wait_idle()
            if self._settle is not None:
                await self._settle()
            if not any(not b.is_idle() for g in groups for b in g.values()):
                return
