"""The supervisor: the façade the daemon drives, wiring the runtime's collaborating objects.

* start-up against the broker (``startup``): unfinished amendments settled, positions read;
* intake (``intake``): trades adopted from the store poll and from the broker, stages
  calculated and recorded (``adoption``), pending ones opened and adopted at their fill
  (``fills``);
* the actors (``actors``): started into the slots table (``slots``), restarted after a crash
  with back-off, abandoned past their restart budget;
* best prices written in the background (``progress``);
* the broker's events (``events``) and its real stops, checked continuously (``stops``);
* recalculation at closed bars, reloads and per-trade kill switches (``recalc``);
* the supervisor's own store writes (``records``), queued when not durable in time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import trio

from traild.core.conditions import BarHistory
from traild.core.instruments import InstrumentTable
from traild.core.messages import PositionOpened, TradeRecord
from traild.ports import Broker, BrokerEvent, TradeStore
from traild.runtime.actors import Actors
from traild.runtime.adoption import Stager
from traild.runtime.events import BrokerEvents
from traild.runtime.fills import Fills
from traild.runtime.gateway import Gateway
from traild.runtime.intake import Intake
from traild.runtime.progress import Progress
from traild.runtime.recalc import Replanner
from traild.runtime.records import Records
from traild.runtime.router import Router
from traild.runtime.slots import Slot, Slots
from traild.runtime.stages import Policy
from traild.runtime.startup import broker_positions, reconcile_amendments
from traild.runtime.stops import StopKeeper
from traild.runtime.tasks import Background, supervised
from traild.runtime.trade_actor import TradeActor


class Supervisor:
    """Adopts trades, owns the actors' nursery, and hands each event to its object."""

    def __init__(
        self,
        policy: Policy,
        store: TradeStore,
        broker: Broker,
        gateway: Gateway,
        router: Router,
        instruments: InstrumentTable,
        histories: dict[str, BarHistory],
        now: Callable[[], datetime],
        catch_up: bool = False,
        actor_factory: Callable[..., TradeActor] = TradeActor,
    ) -> None:
        self.policy = policy
        self.store = store
        self.broker = broker
        self.gateway = gateway
        self.router = router
        self.now = now
        self.counts = {"adopted": 0, "closed": 0, "crashed": 0, "abandoned": 0}
        current = self._policy
        self.background = Background()
        self.table = Slots()
        self.slots: dict[int, Slot] = self.table.by_trade
        self.records = Records(store, self.background)
        self.progress = Progress(store, self.table, current)
        self.actors = Actors(
            self.table,
            router,
            gateway,
            instruments,
            current,
            self.background,
            self.records,
            self.progress.due,
            self.counts,
            catch_up,
            actor_factory,
        )
        router.on_error = self.actors.on_error
        self.stops = StopKeeper(
            broker,
            gateway,
            self.table.actor_of_deal,
            lambda: current().reconcile_stops_s,
            self.records.broker_stop_soon,
        )
        self.replanner = Replanner(
            self.table, gateway, histories, now, current, self.records, self.counts
        )
        stager = Stager(store, instruments, histories, now, current)
        self.fills = Fills(broker, store, stager, self.actors.launch, self.records)
        self.intake = Intake(
            store,
            broker,
            instruments,
            current,
            self.table,
            stager,
            self.actors,
            self.fills,
            self.stops,
            self.records,
            self.replanner.override,
        )
        self.events = BrokerEvents(
            store,
            instruments,
            self.table,
            router,
            gateway,
            self.stops,
            self.fills,
            self.progress,
            self.intake.adopt,
            self.counts,
        )

    def _policy(self) -> Policy:
        return self.policy

    @property
    def actor_factory(self) -> Callable[..., TradeActor]:
        return self.actors.factory

    @actor_factory.setter
    def actor_factory(self, factory: Callable[..., TradeActor]) -> None:
        self.actors.factory = factory

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.background.nursery = nursery
            await self.reconcile()
            await self.adopt_from_broker()
            await self.poll_store()
            nursery.start_soon(supervised, "progress", self.progress.run)
            nursery.start_soon(supervised, "reconcile", self.stops.run)
            task_status.started()
            await trio.sleep_forever()

    async def reconcile(self) -> None:
        """Settle every non-final amendment against the broker; never re-send blindly."""
        await reconcile_amendments(self.store, self.broker, self.now)

    async def adopt_from_broker(self) -> None:
        """Positions at the broker that traild does not know yet become trades; the stops of
        known ones are remembered, so no actor trails from a database level the broker was
        not asked about. Retried with back-off until the broker answers (``daemon.ready``
        waits: nothing is sent before the broker's stops are known)."""
        positions = await broker_positions(self.broker)
        known = await self.store.trades_by_deals([p.deal_id for p in positions])
        for position in positions:
            if position.deal_id in known:
                self.intake.remember(position)
                continue
            await self.on_broker_event(PositionOpened(position, self.now()))

    async def poll_store(self) -> None:
        """Adopt trades inserted (or re-opened) since the previous poll; apply changed
        per-trade overrides to the running ones (``intake``)."""
        await self.intake.poll_store()

    async def adopt(self, trade: TradeRecord) -> None:
        await self.intake.adopt(trade)

    async def on_broker_event(self, event: BrokerEvent) -> None:
        """Handle one broker event; an unexpected error costs this event only (``events``)."""
        await self.events.on_event(event)

    async def flush_progress(self, everything: bool = False) -> None:
        """Write due best prices (all of them when ``everything``) in one batched write."""
        await self.progress.flush(everything)

    def on_bar_closed(self, epic: str) -> None:
        """A bar of ``epic`` closed: recalculate its trades whose regime shifted (SPEC §3)."""
        self.replanner.on_bar_closed(epic)

    def apply_policy(self, policy: Policy) -> None:
        """A reloaded configuration: every actor switches before its next tick."""
        self.policy = policy
        self.replanner.apply_policy()
