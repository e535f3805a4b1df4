"""Ticks by epic to the actors of that epic.

Each epic has one latest-wins mailbox and one dispatcher: the mailbox never queues — it keeps the
latest tick plus the most favourable bid and ask seen since the dispatcher last looked — so an
epic whose actors fall behind skips ticks without any actor missing its best price. The
dispatcher hands each tick to every actor of the epic by a plain call (the ladder decision is
synchronous), which is what makes a thousand actors cheap. An actor that raises is reported to
``on_error`` and removed; the supervisor decides about its restart.

In lockstep mode (deterministic replay) ``publish`` dispatches at once and then waits until the
``settle`` hook (the gateway) is idle, so every amendment is answered before the next tick.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from traild.core.messages import Tick


class TickTarget(Protocol):
    """Anything that takes ticks of one epic (a trade actor)."""

    def on_tick(self, tick: Tick) -> None: ...


ErrorHook = Callable[[int, Exception], None]


@dataclass(frozen=True, slots=True)
class RouterStatistics:
    published: int
    dispatched: int
    coalesced: int
    epics: int
    targets: int


class Mailbox:
    """Latest-wins slot for one epic's ticks."""

    def __init__(self) -> None:
        self._latest: Tick | None = None
        self._max_bid: Tick | None = None
        self._min_ask: Tick | None = None
        self._count = 0
        self._ready = trio.Event()
        self.coalesced = 0

    def put_nowait(self, tick: Tick) -> None:
        """Store ``tick``; never blocks, never grows."""
        if self._latest is not None:
            self.coalesced += 1
        self._latest = tick
        if self._max_bid is None or tick.bid > self._max_bid.bid:
            self._max_bid = tick
        if self._min_ask is None or tick.ask < self._min_ask.ask:
            self._min_ask = tick
        self._count += 1
        self._ready.set()

    async def get(self) -> list[Tick]:
        """Wait for ticks; return the extremes (if skipped ticks held them) then the latest."""
        while self._latest is None:
            await self._ready.wait()
        latest, hi, lo, count = self._latest, self._max_bid, self._min_ask, self._count
        self._latest = self._max_bid = self._min_ask = None
        self._count = 0
        self._ready = trio.Event()
        if count == 1 or hi is None or lo is None:
            return [latest]
        # A synthetic quote carrying the best bid and the best ask of the skipped ticks.
        return [Tick(latest.epic, latest.ts, hi.bid, lo.ask), latest]


class Router:
    """Routes ticks to the targets subscribed for their epic."""

    def __init__(
        self,
        lockstep: bool = False,
        settle: Callable[[], Awaitable[None]] | None = None,
        on_error: ErrorHook | None = None,
    ) -> None:
        self.lockstep = lockstep
        self._settle = settle
        self.on_error: ErrorHook = on_error or _raise
        self._targets: dict[str, dict[int, TickTarget]] = {}
        self._skip: dict[int, int] = {}  # key -> sequence number of a tick it must not get
        self._boxes: dict[str, Mailbox] = {}
        self._nursery: trio.Nursery | None = None
        self.published = 0
        self.dispatched = 0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the per-epic dispatchers (not needed in lockstep mode)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def subscribe(
        self, epic: str, key: int, target: TickTarget, skip_current_tick: bool = False
    ) -> None:
        """Deliver ``epic``'s ticks to ``target``; ``skip_current_tick``: not the tick being
        routed right now (a fill: the trade starts trailing with the next tick)."""
        self._targets.setdefault(epic, {})[key] = target
        if skip_current_tick:
            self._skip[key] = self.published + 1

    def unsubscribe(self, epic: str, key: int) -> None:
        self._targets.get(epic, {}).pop(key, None)
        self._skip.pop(key, None)

    def targets(self, epic: str) -> int:
        return len(self._targets.get(epic, {}))

    async def publish(self, tick: Tick) -> None:
        self.published += 1
        if self.lockstep:
            self._dispatch(tick, self.published)
            if self._settle is not None:
                await self._settle()
            return
        box = self._boxes.get(tick.epic)
        if box is None:
            box = self._boxes[tick.epic] = Mailbox()
            if self._nursery is None:
                raise RuntimeError("Router.run must be started before non-lockstep publish")
            self._nursery.start_soon(self._dispatcher, box)
        box.put_nowait(tick)

    async def _dispatcher(self, box: Mailbox) -> None:
        while True:
            for tick in await box.get():
                self._dispatch(tick, -1)
            await trio.lowlevel.checkpoint()

    def _dispatch(self, tick: Tick, seq: int) -> None:
        targets = self._targets.get(tick.epic)
        if not targets:
            return
        for key, target in list(targets.items()):
            if self._skip and self._skip.get(key) == seq:
                continue
            try:
                target.on_tick(tick)
            except Exception as exc:  # one broken actor must not stop the others
                self.unsubscribe(tick.epic, key)
                self.on_error(key, exc)
        self.dispatched += 1

    def statistics(self) -> RouterStatistics:
        return RouterStatistics(
            self.published,
            self.dispatched,
            sum(b.coalesced for b in self._boxes.values()),
            len(self._targets),
            sum(len(t) for t in self._targets.values()),
        )


def _raise(key: int, exc: Exception) -> None:
    raise exc
