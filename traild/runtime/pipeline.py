"""The daemon's tick pipeline: every tick from the feed goes guard -> clock -> bar history ->
the paper broker's fills and exits -> the router (the actors); a bar it closes then lets the
supervisor recalculate stages. Rejected ticks are counted, and logged at a bounded rate.

It is given plain values and callables (the guard and condition parameters of the settings in
force), never the settings or an adapter: the composition root wires it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import trio
from loguru import logger

from traild.core.conditions import BarHistory, ConditionParams, GuardParams, TickGuard
from traild.core.errors import TraildError
from traild.core.instruments import InstrumentTable
from traild.core.messages import Tick
from traild.ports import TickListener
from traild.runtime.router import Router
from traild.runtime.supervisor import Supervisor

# WARNING records of rejected ticks: at most this many per reason per window of the trio
# clock; the rest are counted and reported by the next record of that reason and the heartbeat
REJECT_WARNINGS_PER_WINDOW = 10
REJECT_WINDOW_S = 60.0


class FeedClock:
    """The daemon's clock: the latest accepted tick's time (replay and live alike)."""

    def __init__(self) -> None:
        self.latest: datetime | None = None

    def now(self) -> datetime:
        return self.latest if self.latest is not None else datetime.now(UTC)


@dataclass
class Stats:
    ticks: int = 0
    rejected: int = 0
    crossed: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class RejectLog:
    """``tick.rejected`` records, bounded: per reason at most ``burst`` WARNINGs in each
    ``window_s`` of the trio clock. The rest are not logged but counted: the next record of
    that reason carries them as ``unlogged``, and ``unlogged`` totals them for the heartbeat.
    A duplicate (a resent quote) is noise: logged at DEBUG, never counted here."""

    def __init__(
        self, burst: int = REJECT_WARNINGS_PER_WINDOW, window_s: float = REJECT_WINDOW_S
    ) -> None:
        self.burst, self.window_s = burst, window_s
        self.unlogged = 0  # since start, every reason
        self._windows: dict[str, tuple[float, int, int]] = {}  # reason -> start, logged, held

    def log(self, tick: Tick, reason: str) -> None:
        if reason == "duplicate":
            self._record(tick, reason, "DEBUG", 0)
            return
        now = trio.current_time()
        start, logged, held = self._windows.get(reason, (now, 0, 0))
        if now - start >= self.window_s:
            start, logged = now, 0
        if logged >= self.burst:
            self._windows[reason] = (start, logged, held + 1)
            self.unlogged += 1
            return
        self._windows[reason] = (start, logged + 1, 0)
        self._record(tick, reason, "WARNING", held)

    @staticmethod
    def _record(tick: Tick, reason: str, level: str, unlogged: int) -> None:
        record = logger.bind(
            event="tick.rejected",
            epic=tick.epic,
            reason=reason,
            bid=tick.bid,
            ask=tick.ask,
            ts=str(tick.ts),
        )
        if unlogged:
            record = record.bind(unlogged=unlogged)  # of this reason since its last record
        record.log(level, "tick rejected")


class TickPipeline:
    """What happens to one tick, from the feed to the actors (``on_tick``).

    ``guard_params(pip_size)`` and ``condition_params()`` give the values of the settings in
    force; ``live``: ticks must not be far ahead of the wall clock (replay: no such check).
    The composition root sets ``router``, ``supervisor``, ``paper`` and ``record`` once they
    exist; ``stopping`` makes it take no new tick (a drain)."""

    def __init__(
        self,
        instruments: InstrumentTable,
        guard_params: Callable[[float], GuardParams],
        condition_params: Callable[[], ConditionParams],
        live: bool = False,
    ) -> None:
        self.instruments = instruments
        self._guard_params = guard_params
        self._condition_params = condition_params
        self.live = live
        self.clock = FeedClock()
        self.stats = Stats()
        self.rejects = RejectLog()
        self.guards: dict[str, TickGuard] = {}
        self.histories: dict[str, BarHistory] = {}  # shared with the supervisor
        self.last_tick_at: dict[str, float] = {}  # epic -> trio time of its latest tick
        self.downstream = False  # a tick is held up by traild itself (lockstep, database)
        self.stopping = False
        self.router: Router | None = None
        self.supervisor: Supervisor | None = None
        self.paper: TickListener | None = None  # a broker filling on ticks (paper)
        self.record: Callable[[Tick], None] | None = None  # the tick recorder

    async def on_tick(self, tick: Tick) -> None:
        """The tick pipeline: guard, clock, history, paper fills/exits, then the actors."""
        if self.stopping:
            return  # draining: nothing new is taken
        guard = self.guards.get(tick.epic)
        if guard is None:
            try:
                inst = self.instruments.resolve(tick.epic)
            except TraildError as exc:
                self._reject(tick, f"unknown instrument: {exc}")
                return
            guard = self.guards[tick.epic] = TickGuard(self._guard_params(float(inst.pip_size)))
            self.histories[tick.epic] = BarHistory(float(inst.pip_size), self._condition_params())
        reanchored = guard.reanchored
        reason = guard.check(tick.ts, tick.bid, tick.ask, datetime.now(UTC) if self.live else None)
        if reason is not None:
            self._reject(tick, reason)
            return
        if guard.reanchored != reanchored:
            logger.bind(
                event="tick.reanchored", epic=tick.epic, ts=str(tick.ts), bid=tick.bid
            ).warning("ticks that agree with each other are the market now: guard re-anchored")
        self.stats.ticks += 1
        if self.record is not None:
            self.record(tick)
        self.last_tick_at[tick.epic] = trio.current_time()
        self.clock.latest = tick.ts
        bar_closed = self.histories[tick.epic].add(tick.ts, tick.bid, tick.ask)
        self.downstream = True
        try:
            if self.paper is not None and self.supervisor is not None:
                for event in self.paper.on_tick(tick) or ():
                    await self.supervisor.on_broker_event(event)
            assert self.router is not None
            await self.router.publish(tick)
        finally:
            self.downstream = False
        if bar_closed and self.supervisor is not None:
            # after the tick is routed: recalculated stages apply from the next tick
            self.supervisor.on_bar_closed(tick.epic)

    def retune(self) -> None:
        """Reloaded guard thresholds for every guard; each keeps its anchor."""
        for epic, guard in self.guards.items():
            guard.p = self._guard_params(float(self.instruments.resolve(epic).pip_size))

    def _reject(self, tick: Tick, reason: str) -> None:
        self.stats.rejected += 1
        self.stats.by_reason[reason] = self.stats.by_reason.get(reason, 0) + 1
        self.rejects.log(tick, reason)
