"""The broker gateway: every stop amendment goes through here.

* the one authority per trade for the best stop level known (``stop_book``): a target that does
  not beat the broker's stop, the amendment in flight and the queued one is refused;
* one amendment in flight per trade; a newer target replaces a queued one;
* profit-lock and rung amendments jump the queue;
* one pacer per amendment (``pacing``, waited for in ``_pace``): the broker's own (IG's
  trading window) or a token bucket with the broker's allowance per minute;
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
from dataclasses import dataclass
from datetime import datetime

import trio

from traild.core.errors import (
    BrokerError,
    BrokerRejected,
    BrokerTimeout,
    RateLimited,
)
from traild.core.messages import AmendState, Confirmation
from traild.ports import Broker, Pacer, TradeStore
from traild.runtime.pacing import TokenBucket, pacer_for
from traild.runtime.records import AmendmentRecords, trade_log
from traild.runtime.stop_book import AmendTarget, Better, StopBook

__all__ = ["AmendTarget", "Gateway", "GatewayStatistics"]


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
        self.records = AmendmentRecords(store, now)  # the audit trail, never waited for
        self.bucket: Pacer = pacer_for(broker, allowance_per_minute)
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.workers = workers
        self.market_open = market_open or (lambda epic: True)
        self.deadline = deadline or (lambda: math.inf)  # the lease: send only before it
        self.halted = False
        self.closed = False
        self.book = StopBook()
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

    # -- the authority's answers (``StopBook``) ---------------------------------------------
    def track(self, trade_id: int, stop: float | None, better: Better) -> None:
        self.book.track(trade_id, stop, better)

    def observe(self, trade_id: int, stop: float | None) -> None:
        self.book.observe(trade_id, stop)

    def busy(self, trade_id: int) -> bool:
        return self.book.busy(trade_id)

    def mark(self, trade_id: int) -> int:
        return self.book.mark(trade_id)

    def marks(self) -> dict[int, int]:
        return self.book.marks()

    def confirmed(self, trade_id: int) -> float | None:
        return self.book.confirmed(trade_id)

    def held(self, trade_id: int) -> float | None:
        return self.book.held(trade_id)

    def best(self, trade_id: int) -> float | None:
        return self.book.best(trade_id)

    # -- API for actors and the daemon ------------------------------------------------------
    def submit(self, target: AmendTarget) -> bool:
        """Queue ``target`` when it beats every level known for its trade (replacing a queued
        one); never blocks. False: refused (a better level is confirmed, in flight or queued,
        or the gateway is draining)."""
        if self.closed:
            return False
        if not self.book.admits(target):
            self.counts["superseded"] += 1
            return False
        self.book.enqueue(target)
        self._touch()
        return True

    def forget(self, trade_id: int) -> None:
        """The trade is gone: drop what is queued for it."""
        self.book.forget(trade_id)
        self._touch()

    def close(self) -> int:
        """Draining: take no new targets and drop the queued ones (never sent, so nothing is
        lost: the broker keeps its confirmed stops); returns how many were dropped. The
        amendments in flight conclude (``wait_idle``)."""
        self.closed = True
        dropped = self.book.clear_queue()
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

    async def _pace(self) -> None:
        """Wait for the broker's allowance (every request that amends a stop counts)."""
        await self.bucket.acquire()

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
            len(self.book.queued),
            len(self.book.in_flight),
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
        return not self.book.in_flight and (self.halted or not self.book.queued)

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
        return self.book.send_next(trio.current_time(), self.market_open)

    async def _worker(self) -> None:
        while True:
            target = self._next()
            if target is None:
                if self._is_idle():
                    self._idle.set()
                with trio.move_on_after(self._next_deadline()):
                    await self._wakeup.park()
                continue
            try:
                await self._amend(target)
            finally:
                self.book.concluded(target.trade_id)
                self._touch()

    def _next_deadline(self) -> float:
        """Until the earliest back-off of a queued trade ends. A trade in flight is not waited
        for here: its conclusion touches the workers (waiting for its past back-off would
        spin, a zero timeout again and again)."""
        earliest = self.book.earliest_retry()
        if earliest is None or not self.may_send():
            return float("inf")  # the halt's release or a renewal wakes the workers
        return max(0.0, earliest - trio.current_time())

    async def _amend(self, t: AmendTarget) -> None:
        if t.replay:
            await self._replay(t)
            return
        bound = trade_log(t.trade_id, t.deal_id, t.epic).bind(**t.log)
        amend_id = await self.records.write_ahead(t, bound)
        await self._pace()
        if not self.may_send():  # halted, or the lease's deadline came, while we waited
            why = "halted" if self.halted else "lease not renewed"
            await self.records.state(amend_id, AmendState.FAILED, error=f"{why} before sending")
            self.book.release(t.trade_id)
            self._requeue(t)  # sent after `traild resume` or a renewal, if still wanted
            return
        bound.bind(event="stop.requested", old=t.previous, new=t.level, reason=t.reason.value).info(
            "stop amendment sent"
        )
        self.counts["sent"] += 1
        await self.records.state(amend_id, AmendState.SENT)
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
            await self.records.state(amend_id, AmendState.FAILED, error="rate limited")
            self._retry_later(t, pause)
            return
        except BrokerTimeout:
            result = await self._reconcile(t)
            if result is None:
                await self.records.state(amend_id, AmendState.FAILED, error="timeout")
                self._fail(t, "timeout; position re-read shows the old stop")
                return
        except BrokerRejected as exc:
            result = Confirmation(False, None, "", str(exc))
        except BrokerError as exc:
            await self.records.state(amend_id, AmendState.FAILED, error=str(exc))
            self._fail(t, str(exc))
            return
        await self._conclude(t, amend_id, result)

    async def _replay(self, t: AmendTarget) -> None:
        """Re-apply an already confirmed level to a restored paper broker (no new audit row).

        It paces through the bucket like any amendment: the broker counts it all the same."""
        await self._pace()
        if not self.may_send():
            self.book.release(t.trade_id)
            self._requeue(t)
            return
        try:
            result = await self.broker.amend_stop(t.deal_id, t.level, t.limit)
        except BrokerError as exc:
            result = Confirmation(False, None, "", str(exc))
        trade_log(t.trade_id, t.deal_id, t.epic).bind(
            event="stop.replayed", stop=t.level, accepted=result.accepted
        ).debug("confirmed level re-applied")
        self.book.release(t.trade_id)
        if result.accepted:
            self.book.confirm(t.trade_id, t.level)
            t.on_confirmed(t.level)
        else:
            t.on_failed(result.reason)

    async def _reconcile(self, t: AmendTarget) -> Confirmation | None:
        """After a timeout: did the amendment land? Re-read the position; never re-send blind."""
        try:
            position = await self.broker.get_position(t.deal_id)
        except BrokerError:
            return None
        if position is not None:
            self.book.confirm(t.trade_id, position.stop)  # the broker's truth, whatever it is
        if (
            position is not None
            and position.stop is not None
            and not t.better(t.level, position.stop)
        ):
            return Confirmation(True, position.stop, "reconciled")
        return None

    async def _conclude(self, t: AmendTarget, amend_id: int | None, result: Confirmation) -> None:
        self.book.release(t.trade_id)  # answered: what is still held is the queued one
        log = trade_log(t.trade_id, t.deal_id, t.epic)
        if result.accepted:
            level = result.level if result.level is not None else t.level
            self.book.confirm(t.trade_id, level)
            self.book.drop_beaten(t, level)  # the broker already has it, or better
            await self.records.confirmed(amend_id, t, level)
            self.counts["confirmed"] += 1
            self.book.succeeded(t.trade_id)
            t.on_confirmed(level)
            log.bind(
                event="stop.confirmed",
                stop=level,
                reason=t.reason.value,
                reference=result.reference,
            ).info("stop amendment confirmed")
            return
        self.counts["rejected"] += 1
        await self.records.state(
            amend_id, AmendState.REJECTED, error=result.reason, ref=result.reference
        )
        log.bind(
            event="stop.rejected", stop=t.level, reason=t.reason.value, broker_reason=result.reason
        ).warning("stop amendment rejected")
        self._backoff(t.trade_id)
        t.on_failed(result.reason)

    def _fail(self, t: AmendTarget, why: str) -> None:
        self.counts["failed"] += 1
        trade_log(t.trade_id, t.deal_id, t.epic).bind(
            event="stop.failed", stop=t.level, error=why
        ).warning("stop amendment failed; will retry")
        self._retry_later(t, None)

    def _retry_later(self, t: AmendTarget, delay: float | None) -> None:
        """Requeue ``t`` (unless a newer target replaced it) after a back-off."""
        self.book.release(t.trade_id)
        self._backoff(t.trade_id, delay)
        self._requeue(t)

    def _requeue(self, t: AmendTarget) -> None:
        """``t`` again (``StopBook.requeue``), unless the gateway is draining."""
        if not self.closed:
            self.book.requeue(t)

    def _backoff(self, trade_id: int, delay: float | None = None) -> None:
        n = self.book.failed(trade_id)
        wait = delay if delay is not None else min(self.retry_max, self.retry_base * 2 ** (n - 1))
        self.book.hold(trade_id, trio.current_time() + wait)
