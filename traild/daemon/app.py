"""The composition root: the only module that wires settings, adapters and the runtime.

``Daemon.run`` opens the store, owns the account's lease, opens the broker and the feed, and
starts the runtime's parts: the tick pipeline (``runtime.pipeline``), health loops
(``runtime.health``), gateway, router and supervisor. What it builds from the settings is in
``factories``; the settings in force (reload, database overrides, halt) are ``reload.LiveConfig``.
"""

from __future__ import annotations

import gc
import math
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio
from loguru import logger

from traild.adapters import systemd
from traild.adapters.recorder import TickRecorder
from traild.config.settings import Settings
from traild.core.errors import TraildError
from traild.core.instruments import InstrumentTable
from traild.daemon.exits import EXIT_OK, EXIT_PENDING, EXIT_REFUSED, exit_code, hand_on
from traild.daemon.factories import (
    display_url,
    journal_path,
    make_feed,
    make_policy,
    market_gate,
    open_broker,
    open_ig_broker,
    restore_paper,
)
from traild.daemon.reload import LiveConfig, apply_live
from traild.ports import (
    Broker,
    ConfigBacked,
    EpicFollowingFeed,
    HoldableFeed,
    LeaseBacked,
    PreloadedFeed,
    PriceFeed,
    StoreWithStatistics,
    TickListener,
    TradeStore,
)
from traild.runtime.gateway import Gateway
from traild.runtime.health import Health, HealthTimes
from traild.runtime.lease import LeaseKeeper, idle_transaction_limit
from traild.runtime.pipeline import TickPipeline
from traild.runtime.router import Router
from traild.runtime.supervisor import Supervisor
from traild.runtime.tasks import supervised

__all__ = ["EXIT_OK", "EXIT_PENDING", "EXIT_REFUSED", "Daemon", "make_policy", "open_ig_broker"]


class Daemon:
    """One running traild: feed -> guard -> paper broker -> router -> actors -> gateway."""

    def __init__(
        self,
        settings: Settings,
        config_path: str | None = None,
        broker: Broker | None = None,
        feed: PriceFeed | None = None,
    ) -> None:
        self.live = LiveConfig(settings, config_path, self._apply_live, self._set_halted)
        self._broker = broker
        self._feed = feed
        self.pipeline = TickPipeline(
            InstrumentTable(),  # the configured one once ``run`` opens the store
            lambda pip_size: self.settings.guard_params(pip_size),
            lambda: self.settings.condition_params(),
            live=settings.feed.kind == "ig",
        )
        self.instruments = self.pipeline.instruments
        self.stats = self.pipeline.stats
        self.on_tick = self.pipeline.on_tick  # the feed's sink (a benchmark may wrap it)
        self.health = Health(
            self.pipeline,
            self._health_times,
            lambda: self.live.halted,
            lambda: self.live.service.version,
            systemd,
        )
        self._store: TradeStore | None = None
        self._feed_scope = trio.CancelScope()
        self.supervisor: Supervisor | None = None
        self.gateway: Gateway | None = None
        self.router: Router | None = None
        self.recorder: TickRecorder | None = None  # [feed] record
        self.lease: LeaseKeeper | None = None  # the broker account's lease (issue #22)
        self._sigs: AsyncIterator[int] | None = None  # signals received since ``run`` began

    @property
    def settings(self) -> Settings:
        """The settings in force (a reload or the database's overrides may change them)."""
        return self.live.settings

    @property
    def stopping(self) -> bool:
        """Draining (or the lease is lost): the pipeline takes no new tick."""
        return self.pipeline.stopping

    def _health_times(self) -> HealthTimes:
        s = self.settings
        return HealthTimes(s.daemon.heartbeat_s, s.database.poll_interval_s, s.feed.stale_after_s)

    # -- wiring -----------------------------------------------------------------------------
    @asynccontextmanager
    async def _open_store(self) -> AsyncIterator[tuple[TradeStore, PriceFeed | None]]:
        """The store (without its journal: that waits for the lease) and a replay feed."""
        from traild.adapters.store import open_store

        s = self.settings
        self.instruments = self.pipeline.instruments = s.instrument_table()
        replay = self._feed
        if replay is None and s.feed.kind == "replay":
            replay = make_feed(s, None)  # read every tick file before the store and adoption
        if isinstance(replay, PreloadedFeed):
            await trio.to_thread.run_sync(replay.load)  # a bad tick file: DataError before READY
        s.state_path().mkdir(parents=True, exist_ok=True)
        async with open_store(
            s.database_url(),
            write_timeout=s.database.write_timeout_s,
            read_wait=math.inf,
            idle_in_transaction_timeout=idle_transaction_limit(s.daemon.lease_ttl_s),
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
        self.lease = self.health.lease = keeper
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
        async with open_broker(s, self.instruments, self._broker) as broker:
            feed = replay or make_feed(s, broker)
            if isinstance(feed, HoldableFeed) and isinstance(store, StoreWithStatistics):
                stats = store.statistics  # a speed-0 replay waits for the store
                feed.hold_while(lambda: stats().queued_writes)
            yield broker, feed

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or the end of a replay with stop_at_end); exit code."""
        s = self.settings
        logger.bind(
            event="daemon.started",
            broker=s.broker.kind,
            feed=s.feed.kind,
            database=display_url(s.database_url()),
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
                await hand_on(self.lease, store)
        return exit_code(store, self.lease)

    def _wire(
        self, store: TradeStore, broker: Broker, feed: PriceFeed, s: Settings
    ) -> tuple[Gateway, Router, Supervisor]:
        """The gateway, router and supervisor, handed to the pipeline and health."""
        pipeline = self.pipeline
        gateway = Gateway(
            broker,
            store,
            pipeline.clock.now,
            broker.allowance_per_minute() or s.broker.allowance_per_minute,
            s.broker.retry_base_s,
            s.broker.retry_max_s,
            market_open=market_gate(feed),
            deadline=self.lease.send_deadline if self.lease is not None else None,
        )
        if self.lease is not None:
            self.lease.on_renewed = gateway.wake
        lockstep = s.feed.kind == "replay" and s.feed.speed == 0
        router = Router(lockstep=lockstep, settle=gateway.wait_idle)
        supervisor = Supervisor(
            make_policy(s, broker),
            store,
            broker,
            gateway,
            router,
            self.instruments,
            pipeline.histories,
            pipeline.clock.now,
            catch_up=s.feed.kind == "replay" and s.broker.kind == "paper",
        )
        self.gateway, self.router, self.supervisor = gateway, router, supervisor
        self.health.gateway = gateway
        pipeline.router, pipeline.supervisor = router, supervisor
        pipeline.paper = broker if isinstance(broker, TickListener) else None
        pipeline.live = s.feed.kind == "ig"
        return gateway, router, supervisor

    async def _trade(self, store: TradeStore, broker: Broker, feed: PriceFeed) -> None:
        """Adopt, trail and amend until stopped (a signal, the end of a replay, or the lease
        lost to another traild)."""
        source = store.config_store() if isinstance(store, ConfigBacked) else None
        s = await self.live.start(source)
        gateway, router, supervisor = self._wire(store, broker, feed, s)
        if s.feed.kind == "replay" and s.broker.kind == "paper":
            await restore_paper(broker, store)  # before the supervisor adopts (in ``run``)
        self.live.check_halt(initial=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._signals, nursery)  # SIGTERM drains during start-up too
            await nursery.start(gateway.run)
            await nursery.start(router.run)
            await nursery.start(supervisor.run)
            if s.feed.record:
                self.recorder = TickRecorder(s.recording_path(), s.feed.record_days)
                self.pipeline.record = self.recorder.add
                await nursery.start(self.recorder.run)
            nursery.start_soon(
                supervised, "broker", partial(broker.run, supervisor.on_broker_event)
            )
            nursery.start_soon(supervised, "halt", self.live.halt_loop)
            nursery.start_soon(supervised, "heartbeat", partial(self.health.run, store))
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

    def _stop_taking_ticks(self) -> None:
        self.pipeline.stopping = True
        self._feed_scope.cancel()

    async def _on_lease_lost(self, keeper: LeaseKeeper, nursery: trio.Nursery) -> None:
        """Another traild owns the account now: stop at once, during start-up too. Nothing more
        is sent (the gateway's deadline has passed); amendments in flight are the new owner's
        to settle against the broker; whatever this process still writes is refused by token."""
        await keeper.lost.wait()
        self._stop_taking_ticks()
        if self.gateway is not None:
            self.gateway.close()
        systemd.stopping()
        nursery.cancel_scope.cancel()

    def _ready(self) -> None:
        sup = self.supervisor
        count = len(sup.slots) if sup else 0
        logger.bind(event="daemon.ready", trades=count, halted=self.live.halted).info(
            "traild ready"
        )
        systemd.ready(f"managing {count} trades")

    async def _feed_loop(self, feed: PriceFeed) -> None:
        await feed.run(self.on_tick)
        self.health.feed_done.set()
        held = round(float(feed.held_s), 3) if isinstance(feed, HoldableFeed) else 0.0
        logger.bind(event="feed.finished", ticks=self.stats.ticks, held_s=held).info(
            "feed exhausted"
        )

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
        """SIGHUP (``LiveConfig.reload``)."""
        await self.live.reload()

    def _apply_live(self, s: Settings) -> None:
        """Reloaded settings, handed to the running parts (loops read ``self.settings``)."""
        self.pipeline.retune()  # new guard thresholds; the anchors stay
        if self.gateway is not None:
            apply_live(s, self._store, self.gateway)
            if self.supervisor is not None:
                self.supervisor.apply_policy(make_policy(s, self.gateway.broker))

    def _set_halted(self, halted: bool) -> None:
        if self.gateway is not None:
            self.gateway.set_halted(halted)

    # -- periodic -----------------------------------------------------------------------------
    async def _poll_loop(self, feed: PriceFeed) -> None:
        """Adopt new trades and per-trade overrides from the database; an outage only delays
        this loop (its reads wait and retry). A live feed subscribes the epics of newly
        adopted trades (IG: PRICE items)."""
        while True:
            await trio.sleep(self.settings.database.poll_interval_s)
            await self.live.poll()
            if self.supervisor is not None and not self.stopping:
                if isinstance(feed, EpicFollowingFeed):
                    wanted = {slot.actor.trade.epic for slot in self.supervisor.slots.values()}
                    if missing := sorted(wanted - set(feed.epics())):
                        feed.add_epics(missing)
                try:
                    await self.supervisor.poll_store()
                except TraildError as exc:
                    logger.bind(event="store.degraded", error=str(exc)).warning("poll failed")

    async def _drain(self, **why: str) -> None:
        """Stop the feed at once, take no new amendment targets, let the ones in flight
        conclude (bounded by ``drain_timeout_s``), persist best prices."""
        self._stop_taking_ticks()
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
