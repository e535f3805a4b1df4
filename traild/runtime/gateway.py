"""The broker gateway: every stop amendment goes through here.

* the one authority per trade for the best stop level known: the broker's stop (confirmed or
  observed), the amendment in flight and the queued one; a target that does not beat all three
  is refused, a refusal of the one in flight never makes the queued one forgotten, and a queued
  target the confirmed level already beats is dropped (a stop is never replaced by a looser one);
* one amendment in flight per trade; a newer target replaces a queued one;
* profit-lock and rung amendments jump the queue;
* one pacer per amendment (``pacing``): the broker's own (IG's trading window) or a token
  bucket with the broker's allowance per minute;
* write-ahead: the amendment is queued ``pending`` in the store's urgent lane before it is sent,
  and sent without waiting for it to be durable (protection first): no amendment waits behind
  database writes, its own or anyone else's; its records land in order shortly after;
* the trade's stop changes only on the broker's confirmation;
* transient errors back off and retry; after a timeout the position is re-read before any
  retry (no blind re-send); a definitive rejection goes back to the actor, which retries the
  floor on a later tick (after a back-off);
* nothing is sent at or after the account lease's ``deadline`` (``runtime/lease.py``): targets
  wait until a renewal moves it (issue #22).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import trio
from loguru import logger

from traild.core.errors import (
    BrokerError,
    BrokerRejected,
    BrokerTimeout,
    RateLimited,
    StoreError,
)
from traild.core.messages import AmendState, Confirmation, Reason
from traild.ports import Broker, TradeStore
from traild.runtime.pacing import Pacer, TokenBucket, pacer_for


@dataclass(slots=True)
class AmendTarget:
    """What an actor wants: move ``deal_id``'s stop to ``level`` (a price)."""

    trade_id: int
    deal_id: str
    epic: str
    level: float
    previous: float | None
    limit: float | None
    reason: Reason
    priority: bool
    on_confirmed: Callable[[float], None]
    on_failed: Callable[[str], None]
    better: Callable[[float, float], bool]  # better(a, b): a is a tighter stop than b
    log: dict[str, object] = field(default_factory=dict)
    # Catch-up after a restart of a replay: the level was confirmed before the restart, so it is
    # re-applied to the (restored, simulated) broker without a new audit record.
    replay: bool = False


@dataclass(frozen=True, slots=True)
class GatewayStatistics:
    queued: int
    in_flight: int
    sent: int
    confirmed: int
    rejected: int
    failed: int
    rate_limited: int
    halted: bool
    superseded: int = 0  # targets refused because a better level was held already
    closed: bool = False  # draining: no new targets are taken


class Gateway:
    """Serialises amendments per trade and paces them to the broker's allowance."""

    def __init__(
        self,
        broker: Broker,
        store: TradeStore,
        now: Callable[[], datetime],
        allowance_per_minute: int = 60,
        retry_base: float = 0.5,
        retry_max: float = 30.0,
        workers: int = 4,
        market_open: Callable[[str], bool] | None = None,
        deadline: Callable[[], float] | None = None,
    ) -> None:
        self.broker = broker
        self.store = store
        self.now = now
        self.bucket: Pacer = pacer_for(broker, allowance_per_minute)
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.workers = workers
        self.market_open = market_open or (lambda epic: True)
        self.deadline = deadline or (lambda: math.inf)  # the lease: send only before it
        self.halted = False
        self._queued: dict[int, AmendTarget] = {}
        self._priority: dict[int, None] = {}  # queued trades whose target has priority, in order
        self._in_flight: dict[int, AmendTarget] = {}
        # The broker's stop per trade as last known (confirmed by it, or read from it) and the
        # trade's "tighter than" (a BUY's stop is better higher, a SELL's lower).
        self._confirmed: dict[int, float | None] = {}
        self._better: dict[int, Callable[[float, float], bool]] = {}
        self._answers: dict[int, int] = {}  # amendments concluded per trade (see ``mark``)
        self.closed = False
        self._not_before: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        # Every idle worker parks here; a touch wakes them all (one Event per waiting worker
        # would wake only the worker that replaced it last: the others would sleep on).
        self._wakeup = trio.lowlevel.ParkingLot()
        self._idle = trio.Event()
        self._idle.set()
        self.counts = {
            "sent": 0,
            "confirmed": 0,
            "rejected": 0,
            "failed": 0,
            "rate_limited": 0,
            "superseded": 0,
        }

    # -- API for actors ---------------------------------------------------------------------
    def track(
        self, trade_id: int, stop: float | None, better: Callable[[float, float], bool]
    ) -> None:
        """Know ``trade_id`` (its broker stop ``stop`` unless already known: a restarted actor
        does not undo what the gateway learned since)."""
        self._better[trade_id] = better
        self._confirmed.setdefault(trade_id, stop)

    def observe(self, trade_id: int, stop: float | None) -> None:
        """The broker's stop as read from the broker (reconciliation): the truth, looser or not.
        Ignored while an amendment is in flight (its answer will say)."""
        if trade_id in self._better and trade_id not in self._in_flight:
            self._confirmed[trade_id] = stop

    def busy(self, trade_id: int) -> bool:
        """An amendment of the trade is in flight (its outcome is not known yet)."""
        return trade_id in self._in_flight

    def mark(self, trade_id: int) -> int:
        """How many amendments of the trade concluded: a read of the broker taken while this
        changed may predate an answer."""
        return self._answers.get(trade_id, 0)

    def marks(self) -> dict[int, int]:
        """``mark`` of every trade the gateway knows."""
        return {trade_id: self._answers.get(trade_id, 0) for trade_id in self._better}

    def confirmed(self, trade_id: int) -> float | None:
        """The broker's stop as last known."""
        return self._confirmed.get(trade_id)

    def held(self, trade_id: int) -> float | None:
        """The best level on its way to the broker (queued or in flight), if any."""
        better = self._better.get(trade_id)
        levels = [t.level for t in (self._queued.get(trade_id), self._in_flight.get(trade_id)) if t]
        if not levels or better is None:
            return levels[0] if levels else None
        return max(levels, key=_ranking(better))

    def best(self, trade_id: int) -> float | None:
        """The best level known for the trade: confirmed, in flight or queued."""
        held, confirmed = self.held(trade_id), self._confirmed.get(trade_id)
        better = self._better.get(trade_id)
        if held is None or confirmed is None or better is None:
            return held if held is not None else confirmed
        return held if better(held, confirmed) else confirmed

    def submit(self, target: AmendTarget) -> bool:
        """Queue ``target`` when it beats every level known for its trade (replacing a queued
        one); never blocks. False: refused (a better level is confirmed, in flight or queued,
        or the gateway is draining)."""
        if self.closed:
            return False
        self._better.setdefault(target.trade_id, target.better)
        self._confirmed.setdefault(target.trade_id, target.previous)
        best = self.best(target.trade_id)
        if best is not None and not target.better(target.level, best):
            self.counts["superseded"] += 1
            return False
        self._enqueue(target)
        self._touch()
        return True

    def forget(self, trade_id: int) -> None:
        """The trade is gone: drop what is queued for it."""
        self._queued.pop(trade_id, None)
        self._priority.pop(trade_id, None)
        self._not_before.pop(trade_id, None)
        self._failures.pop(trade_id, None)
        self._confirmed.pop(trade_id, None)
        self._better.pop(trade_id, None)
        self._answers.pop(trade_id, None)
        self._touch()

    def close(self) -> int:
        """Draining: take no new targets and drop the queued ones (never sent, so nothing is
        lost: the broker keeps its confirmed stops); returns how many were dropped. The
        amendments in flight conclude (``wait_idle``)."""
        self.closed = True
        dropped = len(self._queued)
        self._queued.clear()
        self._priority.clear()
        self._touch()
        return dropped

    def configure(self, allowance_per_minute: int, retry_base: float, retry_max: float) -> None:
        """A reload: new allowance (the bucket keeps its current fill; a broker's own pacer
        follows the broker) and retry back-off."""
        bucket = self.bucket
        if (
            isinstance(bucket, TokenBucket)
            and float(max(1, allowance_per_minute)) != bucket.capacity
        ):
            self.bucket = bucket.resized(allowance_per_minute)
        self.retry_base, self.retry_max = retry_base, retry_max

    def set_halted(self, halted: bool) -> None:
        self.halted = halted
        self._touch()

    def wake(self) -> None:
        """Something that holds targets back changed (the lease was renewed): look again."""
        self._touch()

    def may_send(self) -> bool:
        """Neither halted nor at the lease's deadline."""
        return not self.halted and trio.current_time() < self.deadline()

    def statistics(self) -> GatewayStatistics:
        c = self.counts
        return GatewayStatistics(
            len(self._queued),
            len(self._in_flight),
            c["sent"],
            c["confirmed"],
            c["rejected"],
            c["failed"],
            c["rate_limited"],
            self.halted,
            c["superseded"],
            self.closed,
        )

    async def wait_idle(self) -> None:
        """Until nothing is in flight and nothing sendable is queued (halted counts as idle)."""
        while not self._is_idle():
            self._idle = trio.Event()
            await self._idle.wait()

    def _is_idle(self) -> bool:
        # Targets held back by the lease's deadline are not idle: they go out after the next
        # renewal, and a lockstep replay waits for them (as it waits for the store), so a
        # database outage does not change where its stops move. The halt is idle: a halted
        # replay goes on without amendments.
        return not self._in_flight and (self.halted or not self._queued)

    def _touch(self) -> None:
        self._wakeup.unpark_all()
        if self._is_idle():
            self._idle.set()

    # -- workers -----------------------------------------------------------------------------
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(self._worker)
            task_status.started()

    def _next(self) -> AmendTarget | None:
        if not self.may_send():
            return None
        now = trio.current_time()
        # The first sendable priority target, else the first sendable one (queue order); the
        # search stops at the first hit, so a burst of targets costs no quadratic scan.
        best = self._first_sendable(self._priority, now) or self._first_sendable(self._queued, now)
        if best is not None:
            del self._queued[best.trade_id]
            self._priority.pop(best.trade_id, None)
            self._in_flight[best.trade_id] = best
        return best

    def _first_sendable(self, trade_ids: dict[int, Any], now: float) -> AmendTarget | None:
        for trade_id in trade_ids:
            if trade_id in self._in_flight or self._not_before.get(trade_id, 0.0) > now:
                continue
            target = self._queued[trade_id]
            if not self.market_open(target.epic):
                # no amendments while the market is closed; looked at again shortly
                self._not_before[trade_id] = now + 5.0
                continue
            return target
        return None

    def _enqueue(self, target: AmendTarget) -> None:
        self._queued[target.trade_id] = target
        if target.priority:
            self._priority[target.trade_id] = None
        else:
            self._priority.pop(target.trade_id, None)

    async def _worker(self) -> None:
        while True:
            target = self._next()
            if target is None:
                self._touch_idle_only()
                with trio.move_on_after(self._next_deadline()):
                    await self._wakeup.park()
                continue
            try:
                await self._amend(target)
            finally:
                self._in_flight.pop(target.trade_id, None)
                if target.trade_id in self._better:
                    self._answers[target.trade_id] = self._answers.get(target.trade_id, 0) + 1
                self._touch()

    def _touch_idle_only(self) -> None:
        if self._is_idle():
            self._idle.set()

    def _next_deadline(self) -> float:
        """Until the earliest back-off of a queued trade ends. A trade in flight is not waited
        for here: its conclusion touches the workers (waiting for its past back-off would
        spin, a zero timeout again and again)."""
        pending = [
            t for k, t in self._not_before.items() if k in self._queued and k not in self._in_flight
        ]
        if not pending or not self.may_send():
            return float("inf")  # the halt's release or a renewal wakes the workers
        return max(0.0, min(pending) - trio.current_time())

    async def _amend(self, t: AmendTarget) -> None:
        if t.replay:
            await self._replay(t)
            return
        bound = logger.bind(trade_id=t.trade_id, deal_id=t.deal_id, epic=t.epic, **t.log)
        amend_id: int | None
        try:
            amend_id = await self.store.write_amendment(
                t.trade_id,
                t.deal_id,
                t.level,
                t.previous,
                t.reason.value,
                self.now(),
                durable=False,
            )
        except StoreError as exc:
            # Protection first: the amendment is sent anyway.
            bound.bind(event="store.degraded", error=str(exc)).warning(
                "write-ahead record not queued; sending the amendment anyway"
            )
            amend_id = getattr(exc, "amendment_id", None)
        await self.bucket.acquire()
        if not self.may_send():  # halted, or the lease's deadline came, while we waited
            why = "halted" if self.halted else "lease not renewed"
            await self._store_state(amend_id, AmendState.FAILED, error=f"{why} before sending")
            self._in_flight.pop(t.trade_id, None)
            self._requeue(t)  # sent after `traild resume` or a renewal, if still wanted
            return
        bound.bind(event="stop.requested", old=t.previous, new=t.level, reason=t.reason.value).info(
            "stop amendment sent"
        )
        self.counts["sent"] += 1
        await self._store_state(amend_id, AmendState.SENT)
        result: Confirmation | None
        try:
            result = await self.broker.amend_stop(t.deal_id, t.level, t.limit)
        except RateLimited as exc:
            self.counts["rate_limited"] += 1
            pause = min(exc.retry_after, self.retry_max)  # re-asked after at most retry_max
            self.bucket.pause(pause)
            bound.bind(event="broker.rate_limited", retry_after=exc.retry_after).warning(
                "broker allowance exceeded; pausing amendments"
            )
            await self._store_state(amend_id, AmendState.FAILED, error="rate limited")
            self._retry_later(t, pause)
            return
        except BrokerTimeout:
            result = await self._reconcile(t)
            if result is None:
                await self._store_state(amend_id, AmendState.FAILED, error="timeout")
                self._fail(t, "timeout; position re-read shows the old stop")
                return
        except BrokerRejected as exc:
            result = Confirmation(False, None, "", str(exc))
        except BrokerError as exc:
            await self._store_state(amend_id, AmendState.FAILED, error=str(exc))
            self._fail(t, str(exc))
            return
        await self._conclude(t, amend_id, result)

    async def _replay(self, t: AmendTarget) -> None:
        """Re-apply an already confirmed level to a restored paper broker (no new audit row).

        It paces through the bucket like any amendment: the broker counts it all the same."""
        await self.bucket.acquire()
        if not self.may_send():
            self._in_flight.pop(t.trade_id, None)
            self._requeue(t)
            return
        try:
            result = await self.broker.amend_stop(t.deal_id, t.level, t.limit)
        except BrokerError as exc:
            result = Confirmation(False, None, "", str(exc))
        logger.bind(
            event="stop.replayed",
            trade_id=t.trade_id,
            deal_id=t.deal_id,
            stop=t.level,
            accepted=result.accepted,
        ).debug("confirmed level re-applied")
        self._in_flight.pop(t.trade_id, None)
        if result.accepted:
            if t.trade_id in self._better:
                self._confirmed[t.trade_id] = t.level
            t.on_confirmed(t.level)
        else:
            t.on_failed(result.reason)

    async def _reconcile(self, t: AmendTarget) -> Confirmation | None:
        """After a timeout: did the amendment land? Re-read the position; never re-send blind."""
        try:
            position = await self.broker.get_position(t.deal_id)
        except BrokerError:
            return None
        if position is not None and t.trade_id in self._better:
            self._confirmed[t.trade_id] = position.stop  # the broker's truth, whatever it is
        if (
            position is not None
            and position.stop is not None
            and not t.better(t.level, position.stop)
        ):
            return Confirmation(True, position.stop, "reconciled")
        return None

    async def _conclude(self, t: AmendTarget, amend_id: int | None, result: Confirmation) -> None:
        self._in_flight.pop(t.trade_id, None)  # answered: what is still held is the queued one
        log = logger.bind(trade_id=t.trade_id, deal_id=t.deal_id, epic=t.epic)
        if result.accepted:
            level = result.level if result.level is not None else t.level
            if t.trade_id in self._better:
                self._confirmed[t.trade_id] = level
            queued = self._queued.get(t.trade_id)
            if queued is not None and not t.better(queued.level, level):
                self._drop_queued(t.trade_id)  # the broker already has it, or better
            if amend_id is not None:
                try:
                    await self.store.confirm_amendment(
                        amend_id, level, self.now(), t.reason is Reason.PROFIT_LOCK, durable=False
                    )
                except StoreError as exc:
                    log.bind(event="store.degraded", error=str(exc)).warning(
                        "confirmation queued, not yet durable"
                    )
            self.counts["confirmed"] += 1
            self._failures.pop(t.trade_id, None)
            self._not_before.pop(t.trade_id, None)
            t.on_confirmed(level)
            log.bind(
                event="stop.confirmed",
                stop=level,
                reason=t.reason.value,
                reference=result.reference,
            ).info("stop amendment confirmed")
            return
        self.counts["rejected"] += 1
        await self._store_state(
            amend_id, AmendState.REJECTED, error=result.reason, ref=result.reference
        )
        log.bind(
            event="stop.rejected", stop=t.level, reason=t.reason.value, broker_reason=result.reason
        ).warning("stop amendment rejected")
        self._backoff(t.trade_id)
        t.on_failed(result.reason)

    def _fail(self, t: AmendTarget, why: str) -> None:
        self.counts["failed"] += 1
        logger.bind(
            event="stop.failed",
            trade_id=t.trade_id,
            deal_id=t.deal_id,
            epic=t.epic,
            stop=t.level,
            error=why,
        ).warning("stop amendment failed; will retry")
        self._retry_later(t, None)

    def _retry_later(self, t: AmendTarget, delay: float | None) -> None:
        """Requeue ``t`` (unless a newer target replaced it) after a back-off."""
        self._in_flight.pop(t.trade_id, None)
        self._backoff(t.trade_id, delay)
        self._requeue(t)

    def _requeue(self, t: AmendTarget) -> None:
        """``t`` again, unless a newer target replaced it, the broker already has a level as
        good, the trade is gone, or the gateway is draining."""
        if self.closed or t.trade_id in self._queued or t.trade_id not in self._better:
            return
        confirmed = self._confirmed.get(t.trade_id)
        if confirmed is None or t.better(t.level, confirmed):
            self._enqueue(t)

    def _drop_queued(self, trade_id: int) -> None:
        self._queued.pop(trade_id, None)
        self._priority.pop(trade_id, None)

    def _backoff(self, trade_id: int, delay: float | None = None) -> None:
        n = self._failures.get(trade_id, 0) + 1
        self._failures[trade_id] = n
        wait = delay if delay is not None else min(self.retry_max, self.retry_base * 2 ** (n - 1))
        self._not_before[trade_id] = trio.current_time() + wait

    async def _store_state(
        self,
        amend_id: int | None,
        state: AmendState,
        error: str | None = None,
        ref: str | None = None,
    ) -> None:
        if amend_id is None:
            return
        try:
            await self.store.update_amendment(
                amend_id, state, self.now(), broker_ref=ref, error=error, durable=False
            )
        except StoreError as exc:
            logger.bind(event="store.degraded", error=str(exc)).warning(
                "amendment state queued, not yet durable"
            )


def _ranking(better: Callable[[float, float], bool]) -> Callable[[float], float]:
    """A sort key from a "tighter than" relation (a BUY's stop ranks by level, a SELL's by
    minus the level)."""
    return (lambda x: x) if better(1.0, 0.0) else (lambda x: -x)
