"""The daemon's health: watchdog pings, stale-feed detection and heartbeats.

Everything here reads in-memory counters only (never the database), so a database outage
never silences the heartbeat nor starves the watchdog. The service manager (systemd) and the
settings in force are handed in: ``times()`` and ``halted()`` are read on every round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio
from loguru import logger

from traild.ports import Journaled, StoreWithStatistics, TradeStore
from traild.runtime.gateway import Gateway
from traild.runtime.lease import LeaseKeeper
from traild.runtime.pipeline import TickPipeline


class ServiceManager(Protocol):
    """What health reports to the service manager (``traild.adapters.systemd`` is one)."""

    def watchdog_interval(self) -> float | None: ...

    def watchdog(self) -> bool: ...

    def status(self, text: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class HealthTimes:
    """The intervals in force (a reload may change them)."""

    heartbeat_s: float
    poll_interval_s: float
    stale_after_s: float


class Health:
    """Pings the watchdog while the feed is fresh and logs a heartbeat every ``heartbeat_s``.

    The composition root sets ``gateway`` (and ``lease``) once they exist; the supervisor and
    router are the pipeline's."""

    def __init__(
        self,
        pipeline: TickPipeline,
        times: Callable[[], HealthTimes],
        halted: Callable[[], bool],
        config_version: Callable[[], int | None],
        service: ServiceManager,
    ) -> None:
        self.pipeline = pipeline
        self.times = times
        self.halted = halted
        self.config_version = config_version
        self.service = service
        self.gateway: Gateway | None = None
        self.lease: LeaseKeeper | None = None
        self.feed_done = trio.Event()  # the feed is exhausted: no tick is due any more
        self.stale_epics: set[str] = set()
        self._last_beat: tuple[float, int, int] | None = None

    async def run(self, store: TradeStore) -> None:
        """Watchdog pings and heartbeats from in-memory counters only (never the database)."""
        interval = self.service.watchdog_interval()
        self._mark_beat()  # the first heartbeat's rates count from here, not from itself
        beat_at = trio.current_time() + self.times().heartbeat_s
        while True:
            t = self.times()
            beat_at = min(beat_at, trio.current_time() + t.heartbeat_s)  # a reload shortened it
            await trio.sleep(min(t.heartbeat_s, t.poll_interval_s, interval or 1e9))
            if self.feed_fresh() and interval is not None:
                self.service.watchdog()
            if trio.current_time() >= beat_at:
                beat_at = trio.current_time() + t.heartbeat_s
                self.heartbeat(store)

    def feed_fresh(self) -> bool:
        """False while an epic with open trades has had no tick for ``stale_after_s``; logs
        ``feed.stale`` once per episode and ``feed.resumed`` when ticks return."""
        sup, last = self.pipeline.supervisor, self.pipeline.last_tick_at
        if self.feed_done.is_set() or sup is None:
            return True
        epics = {slot.actor.trade.epic for slot in sup.slots.values()}
        now = trio.current_time()
        if self.pipeline.downstream:
            # The feed waits for traild (a lockstep replay settling its amendments, a
            # rate-limit pause, the database): not a stale feed.
            for epic in epics:
                last[epic] = now
        limit = self.times().stale_after_s
        stale = {e for e in epics if now - last.setdefault(e, now) > limit}
        for epic in sorted(stale - self.stale_epics):
            logger.bind(event="feed.stale", epic=epic, seconds=limit).warning(
                "no ticks; feed stale (watchdog withheld)"
            )
        for epic in sorted(self.stale_epics - stale):
            logger.bind(event="feed.resumed", epic=epic).info("ticks again")
        self.stale_epics = stale
        return not stale

    def _mark_beat(self) -> None:
        confirmed = self.gateway.statistics().confirmed if self.gateway is not None else 0
        self._last_beat = (trio.current_time(), self.pipeline.stats.ticks, confirmed)

    def heartbeat(self, store: TradeStore) -> None:
        """Counts since start and rates since the previous heartbeat (log + STATUS=)."""
        sup, gw, stats = self.pipeline.supervisor, self.gateway, self.pipeline.stats
        if sup is None or gw is None:
            return
        g = gw.statistics()
        now = trio.current_time()
        since, ticks0, confirmed0 = self._last_beat or (now, stats.ticks, g.confirmed)
        elapsed = max(now - since, 1e-9)
        self._last_beat = (now, stats.ticks, g.confirmed)
        halted = self.halted()
        record: dict[str, object] = {
            "actors": len(sup.slots),
            "ticks": stats.ticks,
            "ticks_rejected": stats.rejected,
            "ticks_rejected_by": dict(sorted(stats.by_reason.items())),
            "ticks_rejected_unlogged": self.pipeline.rejects.unlogged,
            "ticks_per_s": round((stats.ticks - ticks0) / elapsed, 1),
            "amend_sent": g.sent,
            "amend_confirmed": g.confirmed,
            "amend_confirmed_per_min": round((g.confirmed - confirmed0) * 60 / elapsed, 1),
            "amend_rejected": g.rejected,
            "amend_failed": g.failed,
            "rate_limited": g.rate_limited,
            "queued": g.queued,
            "halted": halted,
            "stale_epics": sorted(self.stale_epics),
            "config_version": self.config_version(),
            **sup.counts,
        }
        if self.lease is not None:
            record |= {"lease_fence": self.lease.token, "lease_sending": self.lease.may_send()}
        if (router := self.pipeline.router) is not None:  # what the actors really processed
            r = router.statistics()
            record |= {
                "ticks_dispatched": r.dispatched,
                "ticks_coalesced": r.coalesced,
                "actor_ticks": r.delivered,
            }
        if isinstance(store, StoreWithStatistics):
            s = store.statistics()
            record["store_queued_writes"] = s.queued_writes
            record["store_retries"] = s.retries
        if isinstance(store, Journaled) and (j := store.journal_statistics()) is not None:
            record["journal_pending"] = j.pending
            record["journal_bytes"] = j.bytes
            record["journal_oldest_s"] = round(j.oldest_s, 1)
        logger.bind(event="heartbeat", **record).info("heartbeat")
        self.service.status(
            f"{len(sup.slots)} trades, {stats.ticks} ticks, "
            f"{g.confirmed} stops confirmed" + (", HALTED" if halted else "")
        )
