"""The composition root: the only module that wires settings, adapters and the runtime."""

from __future__ import annotations

import gc
import math
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from loguru import logger

from traild.adapters import systemd
from traild.adapters.recorder import TickRecorder
from traild.config.models import IGSettings
from traild.config.service import DATABASE, ConfigService
from traild.config.settings import Settings, load
from traild.core.conditions import BarHistory, TickGuard
from traild.core.errors import ConfigError, TraildError
from traild.core.instruments import InstrumentTable
from traild.core.messages import Tick
from traild.daemon.halt import halt_path
from traild.daemon.reload import apply_live, plan_reload
from traild.ports import Broker, ConfigBacked, Journaled, LeaseBacked, PriceFeed, TradeStore
from traild.runtime.gateway import Gateway
from traild.runtime.lease import LeaseKeeper
from traild.runtime.router import Router
from traild.runtime.stages import Policy
from traild.runtime.supervisor import Supervisor
from traild.runtime.tasks import supervised

if TYPE_CHECKING:
    from traild.adapters.ig.options import IGStream
    from traild.adapters.ig.rest import IGBroker

EXIT_OK = 0
EXIT_REFUSED = 78  # deliberate refusal to start (config or schema): systemd must not restart
# stopped with records in the journal the database has not taken, or with the account's lease
# lost to another traild (EX_TEMPFAIL: systemd restarts it, as a standby)
EXIT_PENDING = 75


class FeedClock:
    """The daemon's clock: the latest accepted tick's time (replay and live alike)."""

    def __init__(self) -> None:
        self.latest: datetime | None = None

    def now(self) -> datetime:
        return self.latest if self.latest is not None else datetime.now(UTC)


def make_policy(settings: Settings, broker: Broker) -> Policy:
    """The supervisor's view of the settings (min stop distance: the strictest source)."""
    d = settings.daemon
    table = settings.instrument_table()

    def min_distance(epic: str) -> float:
        return max(
            settings.broker.min_stop_distance_pips,
            broker.min_stop_distance_pips(epic),
            float(table.resolve(epic).min_stop_distance_pips),
        )

    return Policy(
        calculator=settings.calculator_params(),
        ladder=settings.ladder_policy(settings.broker.min_stop_distance_pips),
        fixed_stages=settings.stage_config,
        restart_budget=d.restart_budget,
        restart_backoff=d.restart_backoff_s,
        restart_backoff_max=d.restart_backoff_max_s,
        dynamic_failures_before_fixed=d.dynamic_failures_before_fixed,
        persist_every_s=d.persist_best_every_s,
        reconcile_stops_s=d.reconcile_stops_s,
        min_distance=min_distance,
        regime_tables=settings.regime_tables,
        realtime_recalc=settings.trailing.realtime_recalc,
        realtime_regime_shift=settings.trailing.realtime_regime_shift,
    )


def journal_path(settings: Settings) -> Path:
    """The write-ahead journal of this database (``journal_dir``)."""
    from traild.adapters.store import display_url
    from traild.adapters.store.journal import journal_dir

    return journal_dir(settings.state_path(), display_url(settings.database_url()))


@dataclass
class Stats:
    ticks: int = 0
    rejected: int = 0
    crossed: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class Daemon:
    """One running traild: feed -> guard -> paper broker -> router -> actors -> gateway."""

    def __init__(
        self,
        settings: Settings,
        config_path: str | None = None,
        broker: Broker | None = None,
        feed: PriceFeed | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.instruments = InstrumentTable()
        self._broker = broker
        self._feed = feed
        self.clock = FeedClock()
        self.stats = Stats()
        self.guards: dict[str, TickGuard] = {}
        self.histories: dict[str, BarHistory] = {}
        self.last_tick_wall: dict[str, float] = {}
        self._downstream = False  # a tick is held up by traild itself (lockstep, database)
        self._store: TradeStore | None = None
        self.stale_epics: set[str] = set()
        self._last_beat: tuple[float, int, int] | None = None
        self.feed_done = trio.Event()
        self._feed_scope = trio.CancelScope()
        self.stopping = False
        self.halted = False
        self.supervisor: Supervisor | None = None
        self.gateway: Gateway | None = None
        self.router: Router | None = None
        self.on_tick_hook: Callable[[Tick], list[Any]] | None = None
        self.recorder: TickRecorder | None = None  # [feed] record
        self.lease: LeaseKeeper | None = None  # the broker account's lease (issue #22)
        self._sigs: AsyncIterator[int] | None = None  # signals received since ``run`` began
        self.config = ConfigService(settings, None)

    # -- wiring -----------------------------------------------------------------------------
    @asynccontextmanager
    async def _open_store(self) -> AsyncIterator[tuple[TradeStore, PriceFeed | None]]:
        """The store (without its journal: that waits for the lease) and a replay feed."""
        from traild.adapters.store import open_store

        s = self.settings
        self.instruments = s.instrument_table()
        replay = self._feed
        if replay is None and s.feed.kind == "replay":
            replay = _make_feed(s, None)  # read every tick file before the store and adoption
        load = getattr(replay, "load", None)
        if callable(load):
            await trio.to_thread.run_sync(load)  # a bad tick file: DataError before READY
        s.state_path().mkdir(parents=True, exist_ok=True)
        async with open_store(
            s.database_url(), write_timeout=s.database.write_timeout_s, read_wait=math.inf
        ) as store:
            self._store = store
            yield store, replay

    async def _own(self, store: TradeStore) -> bool:
        """Own the broker account's lease (standing by while another traild holds it) and fence
        the store's writes with its token; False: stopped while standing by."""
        from traild.daemon.ownership import account_key, stand_by, this_instance

        s = self.settings
        if not isinstance(store, LeaseBacked):
            return True
        me = this_instance(s.state_path())
        keeper = LeaseKeeper(store.leases(), account_key(s), me, s.daemon.lease_ttl_s)
        assert self._sigs is not None
        if not await stand_by(keeper, self._sigs):
            return False
        assert keeper.token is not None
        await store.fence(
            keeper.account, keeper.token, keeper.predecessor, lambda: keeper.lose("fenced")
        )
        self.lease = keeper
        return True

    async def _start_journal(self, store: TradeStore) -> None:
        """The write-ahead journal, once the store is fenced: what this home's previous run
        left is applied (records of an older tenure are not) before anything is adopted."""
        if isinstance(store, LeaseBacked):
            await store.open_journal(journal_path(self.settings))

    @asynccontextmanager
    async def _open_trading(
        self, store: TradeStore, replay: PriceFeed | None
    ) -> AsyncIterator[tuple[Broker, PriceFeed]]:
        """The broker (IG: its login and streaming session, only once the lease is ours) and
        the feed."""
        s = self.settings
        async with _open_broker(s, self.instruments, self._broker) as broker:
            feed = replay or _make_feed(s, broker)
            hold, stats = getattr(feed, "hold_while", None), getattr(store, "statistics", None)
            if callable(hold) and callable(stats):  # a speed-0 replay waits for the store
                hold(lambda: stats().queued_writes)
            yield broker, feed

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or the end of a replay with stop_at_end); exit code."""
        s = self.settings
        logger.bind(
            event="daemon.started",
            broker=s.broker.kind,
            feed=s.feed.kind,
            database=_display_url(s.database_url()),
        ).info("traild starting")
        # One receiver from the start: a signal during start-up or while standing by is
        # never left to Python's default handler (which would kill the process).
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as sigs:
            self._sigs = sigs
            async with self._open_store() as (store, replay):
                if not await self._own(store):
                    return EXIT_OK  # stopped while standing by: it never traded
                async with trio.open_nursery() as owning:  # renewed from the start on
                    if self.lease is not None:
                        await owning.start(self.lease.run)
                        owning.start_soon(self._on_lease_lost, self.lease, owning)
                    await self._start_journal(store)
                    async with self._open_trading(store, replay) as (broker, feed):
                        await self._trade(store, broker, feed)
                    owning.cancel_scope.cancel()
                await self._release(store)
        return self._exit_code(store)

    async def _trade(self, store: TradeStore, broker: Broker, feed: PriceFeed) -> None:
        """Adopt, trail and amend until stopped (a signal, the end of a replay, or the lease
        lost to another traild)."""
        s = await self._configure(store)
        lockstep = s.feed.kind == "replay" and s.feed.speed == 0
        gateway = Gateway(
            broker,
            store,
            self.clock.now,
            broker.allowance_per_minute() or s.broker.allowance_per_minute,
            s.broker.retry_base_s,
            s.broker.retry_max_s,
            market_open=_market_gate(feed),
            deadline=self.lease.send_deadline if self.lease is not None else None,
        )
        if self.lease is not None:
            self.lease.on_renewed = gateway.wake
        router = Router(lockstep=lockstep, settle=gateway.wait_idle)
        replay_paper = s.feed.kind == "replay" and s.broker.kind == "paper"
        if replay_paper:
            await _restore_paper(broker, store)
        supervisor = Supervisor(
            make_policy(s, broker),
            store,
            broker,
            gateway,
            router,
            self.instruments,
            self.histories,
            self.clock.now,
            catch_up=replay_paper,
        )
        self.gateway, self.router, self.supervisor = gateway, router, supervisor
        self._apply_halt(initial=True)
        paper_tick = getattr(broker, "on_tick", None)
        self.on_tick_hook = paper_tick if callable(paper_tick) else None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._signals, nursery)  # SIGTERM drains during start-up too
            await nursery.start(gateway.run)
            await nursery.start(router.run)
            await nursery.start(supervisor.run)
            if s.feed.record:
                self.recorder = TickRecorder(s.recording_path(), s.feed.record_days)
                await nursery.start(self.recorder.run)
            nursery.start_soon(
                supervised, "broker", partial(broker.run, supervisor.on_broker_event)
            )
            nursery.start_soon(supervised, "halt", self._halt_loop)
            nursery.start_soon(supervised, "heartbeat", partial(self._beat_loop, store))
            nursery.start_soon(supervised, "poll", partial(self._poll_loop, feed))
            # Everything built so far (adopted actors, loaded ticks) lives as long as the
            # daemon: out of the collector's reach, a full collection never stalls ticks.
            gc.collect()
            gc.freeze()
            self._ready()
            with self._feed_scope:
                await self._feed_loop(feed)
            if self.stopping:
                await trio.sleep_forever()  # a signal is draining: it ends the daemon
            if s.feed.kind == "replay" and s.feed.stop_at_end:
                await self._drain(reason="end_of_replay")
                nursery.cancel_scope.cancel()
            await trio.sleep_forever()

    async def _on_lease_lost(self, keeper: LeaseKeeper, nursery: trio.Nursery) -> None:
        """Another traild owns the account now: stop at once, during start-up too. Nothing more
        is sent (the gateway's deadline has passed); amendments in flight are the new owner's
        to settle against the broker; whatever this process still writes is refused by token."""
        await keeper.lost.wait()
        self.stopping = True
        self._feed_scope.cancel()
        if self.gateway is not None:
            self.gateway.close()
        systemd.stopping()
        nursery.cancel_scope.cancel()

    async def _release(self, store: TradeStore) -> None:
        """A clean stop hands the lease on at once, once the database has every write (else it
        expires: the journal keeps what is left for this home's next run)."""
        keeper = self.lease
        if keeper is None or keeper.lost.is_set():
            return
        flush = getattr(store, "flush", None)
        if callable(flush):
            try:
                await flush()
            except TraildError:
                return
        await keeper.release()

    def _exit_code(self, store: TradeStore) -> int:
        """0, or EXIT_PENDING when the journal holds records the database has not taken (they
        are applied at the next start: nothing is lost, but the database is behind) or the
        lease was lost (restarted by systemd, the daemon stands by)."""
        pending = store.pending_on_close if isinstance(store, Journaled) else 0
        lost = self.lease is not None and self.lease.lost.is_set()
        if lost:
            logger.bind(
                event="daemon.stopped", exit=EXIT_PENDING, reason="lease_lost",
                journal_pending=pending,
            ).error("stopped: another traild owns the account now")  # fmt: skip
            return EXIT_PENDING
        if not pending:
            return EXIT_OK
        logger.bind(event="daemon.stopped", exit=EXIT_PENDING, journal_pending=pending).error(
            "stopped with {} record(s) waiting in the journal for the database", pending
        )
        return EXIT_PENDING

    async def _configure(self, store: TradeStore) -> Settings:
        """The file's settings with the database's overrides (ConfigError: refuse to start)."""
        source = store.config_store() if isinstance(store, ConfigBacked) else None
        self.config = ConfigService(self.settings, source)
        self.settings = await self.config.start()
        return self.settings

    def _ready(self) -> None:
        sup = self.supervisor
        count = len(sup.slots) if sup else 0
        logger.bind(event="daemon.ready", trades=count, halted=self.halted).info("traild ready")
        systemd.ready(f"managing {count} trades")

    # -- ticks ------------------------------------------------------------------------------
    async def _feed_loop(self, feed: PriceFeed) -> None:
        await feed.run(self.on_tick)
        self.feed_done.set()
        held = round(float(getattr(feed, "held_s", 0.0)), 3)
        logger.bind(event="feed.finished", ticks=self.stats.ticks, held_s=held).info(
            "feed exhausted"
        )

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
            params = self.settings.guard_params(float(inst.pip_size))
            guard = self.guards[tick.epic] = TickGuard(params)
            self.histories[tick.epic] = BarHistory(
                float(inst.pip_size), self.settings.condition_params()
            )
        reanchored = guard.reanchored
        reason = guard.check(tick.ts, tick.bid, tick.ask, self._wall_clock())
        if reason is not None:
            self._reject(tick, reason)
            return
        if guard.reanchored != reanchored:
            logger.bind(
                event="tick.reanchored", epic=tick.epic, ts=str(tick.ts), bid=tick.bid
            ).warning("ticks that agree with each other are the market now: guard re-anchored")
        self.stats.ticks += 1
        if self.recorder is not None:
            self.recorder.add(tick)
        self.last_tick_wall[tick.epic] = trio.current_time()
        self.clock.latest = tick.ts
        bar_closed = self.histories[tick.epic].add(tick.ts, tick.bid, tick.ask)
        self._downstream = True
        try:
            if self.on_tick_hook is not None and self.supervisor is not None:
                for event in self.on_tick_hook(tick) or ():
                    await self.supervisor.on_broker_event(event)
            assert self.router is not None
            await self.router.publish(tick)
        finally:
            self._downstream = False
        if bar_closed and self.supervisor is not None:
            # after the tick is routed: recalculated stages apply from the next tick
            self.supervisor.on_bar_closed(tick.epic)

    def _wall_clock(self) -> datetime | None:
        """Live feeds: ticks must not be far ahead of the wall clock (replay: none)."""
        return datetime.now(UTC) if self.settings.feed.kind == "ig" else None

    def _reject(self, tick: Tick, reason: str) -> None:
        self.stats.rejected += 1
        self.stats.by_reason[reason] = self.stats.by_reason.get(reason, 0) + 1
        record = logger.bind(
            event="tick.rejected",
            epic=tick.epic,
            reason=reason,
            bid=tick.bid,
            ask=tick.ask,
            ts=str(tick.ts),
        )
        level = "DEBUG" if reason == "duplicate" else "WARNING"  # a resent quote is noise
        record.log(level, "tick rejected")

    # -- signals, reload, halt ----------------------------------------------------------------
    async def _signals(self, nursery: trio.Nursery) -> None:
        """Signals received since ``run`` began (during start-up too) are handled here."""
        assert self._sigs is not None
        async for signum in self._sigs:
            if signum == signal.SIGHUP:
                await self.reload()
                continue
            await self._drain(signal=signal.Signals(signum).name)
            nursery.cancel_scope.cancel()
            return

    async def reload(self) -> None:
        """SIGHUP: re-read file and environment; reject invalid config as a whole. Keys a
        running daemon cannot change keep their old values and are reported as
        ``restart_required``; every other changed key is applied at once."""
        systemd.reloading()
        try:
            new = await trio.to_thread.run_sync(load, self.config_path)
        except ConfigError as exc:
            logger.bind(event="config.rejected", problems=exc.problems).error(
                "configuration rejected; keeping the old one"
            )
            systemd.ready("config rejected: " + "; ".join(exc.problems)[:200])
            return
        try:
            new = self.config.rebase(new)
        except ConfigError as exc:
            logger.bind(event="config.rejected", source=DATABASE, problems=exc.problems).error(
                "file and database configuration do not agree; keeping the old one"
            )
            systemd.ready("config rejected: " + "; ".join(exc.problems)[:200])
            return
        self._swap(new, "file")
        systemd.ready("config reloaded")

    async def _poll_config(self) -> None:
        """Database overrides changed by ``traild config set``: applied like a reload."""
        try:
            new = await self.config.poll()
        except TraildError as exc:
            logger.bind(event="store.degraded", error=str(exc)).warning("config poll failed")
            return
        if new is not None:
            self._swap(new, DATABASE)

    def _swap(self, new: Settings, source: str) -> None:
        """Every actor applies ``new`` before its next tick; confirmed stops never loosen.
        Keys a running daemon cannot change keep their old values (``restart_required``)."""
        plan = plan_reload(self.settings, new)
        self.settings = plan.effective
        self._apply_live(plan.effective)
        self._apply_halt()
        logger.bind(
            event="config.reloaded",
            source=source,
            changed=plan.applied,
            restart_required=plan.restart_required,
            config_version=self.config.version,
        ).info("configuration reloaded")

    def _apply_live(self, s: Settings) -> None:
        """Hand the reloaded values to the running parts (loops read ``self.settings``)."""
        for epic, guard in self.guards.items():  # new thresholds; the anchor stays
            guard.p = s.guard_params(float(self.instruments.resolve(epic).pip_size))
        if self.gateway is None:
            return
        apply_live(s, self._store, self.gateway)
        if self.supervisor is not None:
            self.supervisor.apply_policy(make_policy(s, self.gateway.broker))

    def _apply_halt(self, initial: bool = False) -> None:
        halted = self.settings.daemon.halt or halt_path(self.settings).exists()
        if halted != self.halted or (initial and halted):
            self.halted = halted
            if self.gateway is not None:
                self.gateway.set_halted(halted)
            logger.bind(
                event="killswitch.engaged" if halted else "killswitch.released", switch="halt"
            ).warning("global halt " + ("on" if halted else "off"))

    # -- periodic -----------------------------------------------------------------------------
    def _follow_epics(self, feed: PriceFeed) -> None:
        """A live feed subscribes the epics of newly adopted trades (IG: PRICE items)."""
        add = getattr(feed, "add_epics", None)
        if self.supervisor is None or not callable(add):
            return
        wanted = {slot.actor.trade.epic for slot in self.supervisor.slots.values()}
        missing = sorted(wanted - set(feed.epics()))
        if missing:
            add(missing)

    async def _halt_loop(self) -> None:
        """The global kill switch (config or HALT file), in its own loop: it never waits on
        the database, the feed or the store poll."""
        while True:
            await trio.sleep(self.settings.database.poll_interval_s)
            self._apply_halt()

    async def _beat_loop(self, store: TradeStore) -> None:
        """Watchdog pings and heartbeats from in-memory counters only (never the database)."""
        interval = systemd.watchdog_interval()
        self._mark_beat()  # the first heartbeat's rates count from here, not from itself
        beat_at = trio.current_time() + self.settings.daemon.heartbeat_s
        while True:
            heartbeat_s = self.settings.daemon.heartbeat_s
            beat_at = min(beat_at, trio.current_time() + heartbeat_s)  # a reload shortened it
            period = min(heartbeat_s, self.settings.database.poll_interval_s, interval or 1e9)
            await trio.sleep(period)
            if self._feed_fresh() and interval is not None:
                systemd.watchdog()
            if trio.current_time() >= beat_at:
                beat_at = trio.current_time() + heartbeat_s
                self._heartbeat(store)

    async def _poll_loop(self, feed: PriceFeed) -> None:
        """Adopt new trades and per-trade overrides from the database; an outage only delays
        this loop (its reads wait and retry)."""
        while True:
            await trio.sleep(self.settings.database.poll_interval_s)
            await self._poll_config()
            if self.supervisor is not None and not self.stopping:
                self._follow_epics(feed)
                try:
                    await self.supervisor.poll_store()
                except TraildError as exc:
                    logger.bind(event="store.degraded", error=str(exc)).warning("poll failed")

    def _feed_fresh(self) -> bool:
        """False while an epic with open trades has had no tick for ``stale_after_s``; logs
        ``feed.stale`` once per episode and ``feed.resumed`` when ticks return."""
        if self.feed_done.is_set() or self.supervisor is None:
            return True
        epics = {slot.actor.trade.epic for slot in self.supervisor.slots.values()}
        now = trio.current_time()
        if self._downstream:
            # The feed waits for traild (a lockstep replay settling its amendments, a
            # rate-limit pause, the database): not a stale feed.
            for epic in epics:
                self.last_tick_wall[epic] = now
        limit = self.settings.feed.stale_after_s
        stale = {e for e in epics if now - self.last_tick_wall.setdefault(e, now) > limit}
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
        self._last_beat = (trio.current_time(), self.stats.ticks, confirmed)

    def _heartbeat(self, store: TradeStore) -> None:
        """Counts since start and rates since the previous heartbeat (log + STATUS=)."""
        sup, gw = self.supervisor, self.gateway
        if sup is None or gw is None:
            return
        g = gw.statistics()
        now = trio.current_time()
        since, ticks0, confirmed0 = self._last_beat or (now, self.stats.ticks, g.confirmed)
        elapsed = max(now - since, 1e-9)
        self._last_beat = (now, self.stats.ticks, g.confirmed)
        record: dict[str, object] = {
            "actors": len(sup.slots),
            "ticks": self.stats.ticks,
            "ticks_rejected": self.stats.rejected,
            "ticks_rejected_by": dict(sorted(self.stats.by_reason.items())),
            "ticks_per_s": round((self.stats.ticks - ticks0) / elapsed, 1),
            "amend_sent": g.sent,
            "amend_confirmed": g.confirmed,
            "amend_confirmed_per_min": round((g.confirmed - confirmed0) * 60 / elapsed, 1),
            "amend_rejected": g.rejected,
            "amend_failed": g.failed,
            "rate_limited": g.rate_limited,
            "queued": g.queued,
            "halted": self.halted,
            "stale_epics": sorted(self.stale_epics),
            "config_version": self.config.version,
            **sup.counts,
        }
        if self.lease is not None:
            record |= {"lease_fence": self.lease.token, "lease_sending": self.lease.may_send()}
        if self.router is not None:  # what the actors really processed, not only ticks in
            r = self.router.statistics()
            record |= {
                "ticks_dispatched": r.dispatched,
                "ticks_coalesced": r.coalesced,
                "actor_ticks": r.delivered,
            }
        stats = getattr(store, "statistics", None)
        if callable(stats):
            s = stats()
            record["store_queued_writes"] = s.queued_writes
            record["store_retries"] = s.retries
        if isinstance(store, Journaled) and (j := store.journal_statistics()) is not None:
            record["journal_pending"] = j.pending
            record["journal_bytes"] = j.bytes
            record["journal_oldest_s"] = round(j.oldest_s, 1)
        logger.bind(event="heartbeat", **record).info("heartbeat")
        systemd.status(
            f"{len(sup.slots)} trades, {self.stats.ticks} ticks, "
            f"{g.confirmed} stops confirmed" + (", HALTED" if self.halted else "")
        )

    async def _drain(self, **why: str) -> None:
        """Stop the feed at once, take no new amendment targets, let the ones in flight
        conclude (bounded by ``drain_timeout_s``), persist best prices."""
        self.stopping = True
        self._feed_scope.cancel()
        logger.bind(event="daemon.stopping", **why).info("draining")
        systemd.stopping()
        gateway = self.gateway
        if gateway is not None:
            dropped = gateway.close()  # queued targets were never sent: nothing is lost
            with trio.move_on_after(self.settings.daemon.drain_timeout_s):
                await gateway.wait_idle()
            in_flight = gateway.statistics().in_flight
            if in_flight or dropped:
                logger.bind(event="daemon.drain", in_flight=in_flight, dropped=dropped).warning(
                    "{} amendment(s) still in flight (settled against the broker at the next "
                    "start), {} queued target(s) not sent",
                    in_flight,
                    dropped,
                )
        if self.supervisor is not None:
            with trio.move_on_after(self.settings.daemon.drain_timeout_s):
                await self.supervisor.flush_progress(everything=True)


def _display_url(url: str) -> str:
    """The database URL with its password masked (for logs)."""
    from traild.adapters.store import display_url

    return display_url(url)


def _market_gate(feed: PriceFeed) -> Callable[[str], bool] | None:
    """The feed's dealing state where it has one (IG: DLG_FLAG), else always open."""
    gate = getattr(feed, "market_open", None)
    return gate if callable(gate) else None


async def _restore_paper(broker: Broker, store: TradeStore) -> None:
    """A replay restarted after a crash: the paper book is rebuilt from trade_log with each
    trade's initial stop; the actors re-trail from the start of the replay (catch-up)."""
    from traild.adapters.paper import PaperBroker

    if not isinstance(broker, PaperBroker):
        return
    for trade in await store.load_open_trades():
        if trade.entry_price is None:
            continue
        stop = trade.initial_sl_price if trade.initial_sl_price is not None else trade.sl_price
        broker.add_position(trade.position(stop))


@asynccontextmanager
async def _open_broker(
    s: Settings, instruments: InstrumentTable, given: Broker | None
) -> AsyncIterator[Broker]:
    """The configured broker (an injected one as is); IG owns an HTTP session."""
    if given is not None:
        yield given
        return
    b = s.broker
    if b.kind == "ig":
        async with open_ig_broker(s, instruments) as broker:
            yield broker
        return
    from traild.adapters.paper import PaperBroker

    yield PaperBroker(instruments=instruments, seed=b.fault_seed, **b.paper_options())


def _make_feed(s: Settings, broker: Broker | None) -> PriceFeed:
    from traild.adapters.feeds import ReplayFeed, SyntheticFeed

    f = s.feed
    if f.kind == "replay":
        return ReplayFeed(f.files, f.epics, f.speed)
    if f.kind == "synthetic":
        return SyntheticFeed(
            f.synthetic_epics,
            seed=f.synthetic_seed,
            ticks_per_second=f.synthetic_ticks_per_second,
            mean_interval_ms=f.synthetic_interval_ms or None,
            instruments=s.instrument_table(),
        )
    from traild.adapters.ig.rest import IGBroker
    from traild.adapters.ig.stream import IGStreamFeed

    if not isinstance(broker, IGBroker):
        raise ConfigError(["feed.kind: 'ig' needs broker.kind = 'ig'"])
    return IGStreamFeed(
        f.epics,
        broker.stream,  # the account's one Lightstreamer session, shared with TRADE
        account_id=broker.account_id,
        scale=broker.stream_scale,
        stale_after=f.stale_after_s,
    )


@asynccontextmanager
async def open_ig_broker(
    s: Settings,
    instruments: InstrumentTable | None = None,
    *,
    trade_stream: bool = True,
    retry_login: bool = True,
) -> AsyncIterator[IGBroker]:
    """An IGBroker from ``[broker.ig]`` (logged in for the duration of the block).

    ``traild ig check`` passes ``trade_stream=False`` and ``retry_login=False`` (it reports a
    failed login at once instead of waiting it out)."""
    from traild.adapters.ig import options as o
    from traild.adapters.ig.rest import IGBroker

    ig = s.broker.ig
    # an unreachable IG or a 5xx is waited out here, not by systemd restarts
    backoff = (min(1.0, ig.login_backoff_max_s), ig.login_backoff_max_s) if retry_login else None
    async with IGBroker(
        o.IGCredentials(ig.api_url, ig.api_key, ig.identifier, ig.password, ig.account_id or None),
        instruments=instruments or s.instrument_table(),
        timeouts=o.IGTimeouts(request=ig.request_timeout_s, session_refresh=ig.session_refresh_s),
        retry=o.IGRetry(
            login_backoff=backoff,
            confirm_attempts=ig.confirm_attempts,
            confirm_interval=ig.confirm_interval_s,
        ),
        limits=o.IGLimits(
            trading=ig.trading_allowance,
            account=ig.account_allowance,
            application=ig.application_allowance,
        ),
        events=o.IGEvents(
            use_stream=trade_stream and ig.trade_stream,
            poll_interval=ig.positions_poll_s,
            reconcile_interval=ig.reconcile_s,
        ),
        take_over=o.IGTakeOver(
            guaranteed=ig.take_over_guaranteed_stops, trailing=ig.take_over_trailing_stops
        ),
        markets=o.IGMarkets(rules_ttl=ig.rules_ttl_s),
        stream=ig_stream(ig),
    ) as broker:
        yield broker


def ig_stream(ig: IGSettings) -> IGStream:
    """The settings of the account's Lightstreamer session (PRICE feed and TRADE stream)."""
    from traild.adapters.ig.options import IGStream

    return IGStream(
        url=ig.stream_url or None,
        keepalive_ms=ig.keepalive_ms,
        backoff_initial=ig.reconnect_initial_s,
        backoff_max=ig.reconnect_max_s,
        tlcp_version=ig.tlcp_version,
        timeout=ig.request_timeout_s,
    )
