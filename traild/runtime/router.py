"""Ticks by epic to the actors of that epic.

Each epic has one latest-wins mailbox and one dispatcher: the mailbox never queues — it keeps the
latest tick plus the most favourable bid and ask seen since the dispatcher last looked — so an
epic whose actors fall behind skips ticks without any actor missing its best price. The
dispatcher hands each tick to every actor of the epic by a plain call (the ladder decision is
synchronous), which is what makes a thousand actors cheap. An actor that raises is reported to
``on_error`` and removed; the supervisor decides about its restart.

Most ticks change nothing for most actors (the price moves inside the band between the trade's
stop and its best price). A target that tells its *quiet band* (``BandedTarget``) is skipped
while the tick's bid (or ask) lies strictly inside that band; one vectorised comparison per
epic finds the actors that must see the tick, so ten thousand actors stay cheap.

In lockstep mode (deterministic replay) ``publish`` dispatches at once and then waits until the
``settle`` hook (the gateway) is idle, so every amendment is answered before the next tick.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, runtime_checkable

import numpy as np
import trio

from traild.core.messages import Tick


class TickTarget(Protocol):
    """Anything that takes ticks of one epic (a trade actor)."""

    def on_tick(self, tick: Tick) -> None: ...

    def on_extremes(self, tick: Tick) -> None:
        """The best bid and ask of skipped ticks: for the best price only, never a decision."""
        ...


@runtime_checkable
class BandedTarget(Protocol):
    """A target that can say which ticks change nothing for it (see ``TradeActor``)."""

    wake: Callable[[], None] | None

    def on_tick(self, tick: Tick) -> None: ...

    def on_extremes(self, tick: Tick) -> None: ...

    def quiet_band(self) -> tuple[bool, float, float] | None: ...


ErrorHook = Callable[[int, Exception], None]


@dataclass(frozen=True, slots=True)
class RouterStatistics:
    published: int  # ticks handed to the router
    dispatched: int  # ticks (and extremes quotes) dispatched to an epic's targets
    coalesced: int  # ticks merged away by the latest-wins mailboxes (never dispatched)
    epics: int
    targets: int
    delivered: int  # target.on_tick calls: what the actors really processed
    skipped: int  # deliveries saved because the tick lay inside the target's quiet band


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

    async def get(self) -> tuple[Tick | None, Tick]:
        """Wait for ticks; return the extremes (when skipped ticks held better ones) and the
        latest. The extremes are a synthetic quote for the best price only: a stop is decided
        and capped on the latest tick, never on a price already gone (it could sit beyond the
        market)."""
        while self._latest is None:
            await self._ready.wait()
        latest, hi, lo, count = self._latest, self._max_bid, self._min_ask, self._count
        self._latest = self._max_bid = self._min_ask = None
        self._count = 0
        self._ready = trio.Event()
        if count == 1 or hi is None or lo is None or (hi is latest and lo is latest):
            return None, latest
        return Tick(latest.epic, latest.ts, hi.bid, lo.ask), latest


_VECTOR_FROM = 16  # below this many targets a plain loop is cheaper than numpy


class _Group:
    """One epic's targets with their quiet bands in arrays (rebuilt when membership changes)."""

    def __init__(self) -> None:
        self.targets: dict[int, TickTarget] = {}
        self._bands: dict[int, Callable[[], tuple[bool, float, float] | None]] = {}
        self._stale = True
        self._keys: list[int] = []
        self._index: dict[int, int] = {}
        self._on_ask = np.zeros(0, bool)
        self._side: bool | None = None  # every _on_ask entry is this (None: they differ)
        self._lo = np.zeros(0)
        self._hi = np.zeros(0)

    def add(self, key: int, target: TickTarget) -> None:
        self.targets[key] = target
        if isinstance(target, BandedTarget):  # once: a protocol check is slow
            target.wake = partial(self.wake, key)
            self._bands[key] = target.quiet_band
        self._stale = True

    def remove(self, key: int) -> None:
        self._bands.pop(key, None)
        if self.targets.pop(key, None) is not None:
            self._stale = True

    def wake(self, key: int) -> None:
        """``key``'s state changed outside a tick: it sees the next tick."""
        i = self._index.get(key)
        if i is not None and not self._stale:
            self._lo[i], self._hi[i] = np.inf, -np.inf

    def update(self, key: int) -> None:
        i = self._index.get(key)
        if i is None or self._stale:
            return
        quiet_band = self._bands.get(key)
        band = None if quiet_band is None else quiet_band()
        if band is None:
            self._lo[i], self._hi[i] = np.inf, -np.inf
        else:
            on_ask, self._lo[i], self._hi[i] = band
            self._on_ask[i] = on_ask
            if on_ask != self._side:
                self._side = None

    def due(self, tick: Tick) -> list[int]:
        """The keys that must see ``tick`` (all of them for small groups)."""
        if len(self.targets) < _VECTOR_FROM:
            return list(self.targets)
        if self._stale:
            self._rebuild()
        side = self._side  # one side for all (the usual case): compare with a scalar
        if side is None:
            price: Any = np.where(self._on_ask, tick.ask, tick.bid)
        else:
            price = tick.ask if side else tick.bid
        quiet = (self._lo < price) & (price < self._hi)
        if quiet.all():
            return []
        keys = self._keys
        return [keys[i] for i in np.flatnonzero(~quiet).tolist()]

    def _rebuild(self) -> None:
        self._keys = list(self.targets)
        self._index = {k: i for i, k in enumerate(self._keys)}
        n = len(self._keys)
        self._on_ask, self._lo, self._hi = np.zeros(n, bool), np.full(n, np.inf), np.zeros(n)
        self._stale = False
        self._side = None
        for key in self._keys:
            self.update(key)
        on_ask = self._on_ask
        if n and (on_ask.all() or not on_ask.any()):
            self._side = bool(on_ask[0])


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
        self._groups: dict[str, _Group] = {}
        self._skip: dict[int, int] = {}  # key -> sequence number of a tick it must not get
        self._boxes: dict[str, Mailbox] = {}
        self._nursery: trio.Nursery | None = None
        self.published = 0
        self.dispatched = 0
        self.delivered = 0
        self.skipped = 0

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
        group = self._groups.get(epic)
        if group is None:
            group = self._groups[epic] = _Group()
        group.add(key, target)
        if skip_current_tick:
            self._skip[key] = self.published + 1

    def unsubscribe(self, epic: str, key: int) -> None:
        group = self._groups.get(epic)
        if group is not None:
            group.remove(key)
        self._skip.pop(key, None)

    def targets(self, epic: str) -> int:
        group = self._groups.get(epic)
        return 0 if group is None else len(group.targets)

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
            extremes, latest = await box.get()
            if extremes is not None:
                self._dispatch(extremes, -1, extremes=True)
            self._dispatch(latest, -1)
            await trio.lowlevel.checkpoint()

    def _dispatch(self, tick: Tick, seq: int, extremes: bool = False) -> None:
        group = self._groups.get(tick.epic)
        if group is None or not group.targets:
            return
        due = group.due(tick)
        targets = group.targets
        self.skipped += len(targets) - len(due)
        for key in due:
            target = targets.get(key)
            if target is None or (self._skip and self._skip.get(key) == seq):
                continue
            try:
                if extremes:
                    target.on_extremes(tick)
                else:
                    target.on_tick(tick)
            except Exception as exc:  # one broken actor must not stop the others
                self.unsubscribe(tick.epic, key)
                self.on_error(key, exc)
                continue
            group.update(key)
        self.delivered += len(due)
        self.dispatched += 1

    def statistics(self) -> RouterStatistics:
        return RouterStatistics(
            self.published,
            self.dispatched,
            sum(b.coalesced for b in self._boxes.values()),
            len(self._groups),
            sum(len(g.targets) for g in self._groups.values()),
            self.delivered,
            self.skipped,
        )


def _raise(key: int, exc: Exception) -> None:
    raise exc
