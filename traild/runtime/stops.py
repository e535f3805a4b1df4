"""The broker's real stop, checked against the confirmed one, continuously.

The database's ``sl_price`` lags the broker (records land after the answer) and the broker's
stop can change behind traild's back (a person on the platform, the broker itself). So the
broker's stop is read at start-up, on a timer and on every position update it pushes, and
compared with the stop the trade's actor has confirmed (nautilus_trader's live execution
engine runs the same kind of in-flight and position checks on a timer):

* tighter at the broker: taken as the confirmed stop (the ladder never loosens);
* looser or gone: ``stop.drift``, and the confirmed level is sent again (reason ``restore``);
* a trade with an amendment in flight, or answered while the read was under way, is not
  judged on that read (it may predate the answer): it is read again, alone, once its
  amendment has concluded, so a change pushed while an amendment was in flight is not left
  to the next periodic check.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
from loguru import logger

from traild.core.errors import BrokerError
from traild.core.messages import PositionAmended
from traild.ports import Broker
from traild.runtime.gateway import Gateway
from traild.runtime.trade_actor import TradeActor

ActorOf = Callable[[str], TradeActor | None]  # deal id -> its running actor
RECHECK_S = 1.0  # how often deals put aside while busy are looked at again


class StopKeeper:
    """Compares the broker's stops with the confirmed ones and restores any that drifted."""

    def __init__(
        self,
        broker: Broker,
        gateway: Gateway,
        actor_of: ActorOf,
        interval: Callable[[], float],
        record: Callable[[int, float | None], None] = lambda trade_id, stop: None,
    ) -> None:
        self.record = record  # the broker's real stop into the store (no level claims more)
        self.broker = broker
        self.gateway = gateway
        self.actor_of = actor_of
        self.interval = interval
        self.counts = {"checks": 0, "drifts": 0, "restored": 0, "taken": 0, "rechecks": 0}
        self._due: set[str] = set()  # deals to read again once their amendment concluded
        self._wake = trio.Event()

    async def run(self) -> None:
        """Check every running trade's broker stop every ``interval()`` seconds, and the deals
        put aside while busy as soon as their amendment has concluded."""
        next_check = trio.current_time() + self.interval()
        while True:
            with trio.move_on_at(min(next_check, trio.current_time() + RECHECK_S)):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._recheck()
            if trio.current_time() >= next_check:
                await self.check_all()
                next_check = trio.current_time() + self.interval()

    async def _recheck(self) -> None:
        for deal_id in sorted(self._due):
            actor = self.actor_of(deal_id)
            if actor is None:
                self._due.discard(deal_id)
                continue
            if self.gateway.busy(actor.trade_id):
                continue  # still in flight: looked at again shortly
            mark = self.gateway.mark(actor.trade_id)
            try:
                position = await self.broker.get_position(deal_id)
            except BrokerError:
                return  # the broker is not answering: the next round tries again
            self._due.discard(deal_id)
            if position is not None and mark == self.gateway.mark(actor.trade_id):
                self.counts["rechecks"] += 1
                self.compare(actor, position.stop, "recheck")
            elif position is not None:
                self._due.add(deal_id)  # answered meanwhile: read once more

    async def check_all(self) -> bool:
        """One pass over the broker's positions; False when the broker could not be read."""
        marks = self.gateway.marks()
        try:
            positions = await self.broker.open_positions()
        except BrokerError as exc:
            logger.bind(event="broker.error", error=str(exc)).warning(
                "cannot read the broker's stops now; checked again later"
            )
            return False
        self.counts["checks"] += 1
        for position in positions:
            actor = self.actor_of(position.deal_id)
            if actor is None:
                continue
            if marks.get(actor.trade_id) != self.gateway.mark(actor.trade_id):
                self._later(position.deal_id)
                continue
            self.compare(actor, position.stop, "reconcile")
        return True

    def on_amended(self, event: PositionAmended) -> None:
        """A stop/limit change pushed by the broker (IG's OPU): a new limit is re-sent with
        later amendments; the stop is compared like a reconciliation read."""
        actor = self.actor_of(event.deal_id)
        if actor is None:
            return
        actor.set_limit(event.limit)
        self.compare(actor, event.stop, "broker")

    def compare(self, actor: TradeActor, broker_stop: float | None, source: str) -> None:
        """Take a tighter broker stop, restore a looser or missing one (see the module)."""
        if self.gateway.busy(actor.trade_id):
            self._later(actor.trade.deal_id)  # read again once its answer is in
            return
        ours = actor.confirmed_stop
        inst, sign = actor.inst, actor.direction.sign
        if broker_stop is not None and ours is not None:
            diff = sign * (inst.to_ticks(broker_stop) - inst.to_ticks(ours))
            if diff == 0:
                self.gateway.observe(actor.trade_id, broker_stop)
                return
            if diff > 0:
                self._taken(actor, broker_stop, ours, source)
                return
        elif broker_stop is not None:  # traild has no stop of its own yet
            self._taken(actor, broker_stop, ours, source)
            return
        elif ours is None:
            return  # neither has a stop: nothing to restore
        self._drifted(actor, broker_stop, ours, source)

    def _later(self, deal_id: str) -> None:
        self._due.add(deal_id)
        self._wake.set()

    def _taken(self, actor: TradeActor, broker_stop: float, ours: float | None, src: str) -> None:
        self.counts["taken"] += 1
        self.gateway.observe(actor.trade_id, broker_stop)
        actor.on_confirmed(broker_stop)
        actor.log.bind(
            event="trade.stop_changed_at_broker",
            stop=broker_stop,
            previous=ours,
            kept="broker",
            source=src,
        ).warning("the broker's stop is tighter than the confirmed one; taking it")

    def _drifted(self, actor: TradeActor, broker_stop: float | None, ours: float, src: str) -> None:
        self.counts["drifts"] += 1
        self.gateway.observe(actor.trade_id, broker_stop)
        restored = actor.restore(broker_stop)
        if restored:
            self.record(actor.trade_id, broker_stop)
        self.counts["restored"] += restored
        actor.log.bind(
            event="stop.drift",
            broker_stop=broker_stop,
            stop=ours,
            source=src,
            restored=restored,
        ).warning(
            "the broker's stop is "
            + ("gone" if broker_stop is None else "looser than the confirmed one")
            + ("; sending the confirmed one again" if restored else "; left as it is")
        )
