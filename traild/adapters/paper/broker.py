"""The paper broker: an in-memory account that fills, stops out and amends like IG would.

The book (``book.py``) holds the positions and orders and decides fills, exits and amendments
in integer ticks; ``faults.py`` makes amendments wait ``latency_ms`` (trio time) and fail on
purpose with seeded fault injection: rejections, timeouts (applied or not: outcome unknown),
5xx errors, rate-limit bursts and a per-minute allowance.

Events: ``on_tick`` returns what that tick caused (exits, fills, refused orders), so the caller
handles them before the tick reaches the actors (deterministic, like ``traild simulate``);
they are not sent again through ``run(emit)``, which reports the events that arise outside a
tick: manual closes and positions added from outside.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, fields

import trio

from traild.adapters.paper.book import Book
from traild.adapters.paper.faults import Fault, FaultRates, Faults
from traild.core.errors import BrokerRejected, BrokerTimeout, BrokerUnavailable
from traild.core.instruments import InstrumentTable
from traild.core.messages import (
    Confirmation,
    Direction,
    OpenRequest,
    Position,
    PositionClosed,
    PositionOpened,
    Tick,
)
from traild.ports import BrokerEvent, EventSink


@dataclass(frozen=True, slots=True)
class PaperStatistics:
    """A snapshot of the paper account's counters."""

    ticks: int
    open_positions: int
    pending_opens: int
    fills: int
    opens_rejected: int
    closed_stop: int
    closed_limit: int
    closed_manual: int
    gap_fills: int
    amend_calls: int
    amend_accepted: int
    amend_rejected: int
    timeouts: int
    timeouts_applied: int
    unavailable: int
    rate_limited: int


class PaperBroker:
    """A simulated broker implementing ``traild.ports.Broker``; plain values configure it.

    Fault rates are probabilities per ``amend_stop`` call, drawn from ``random.Random(seed)``
    in a fixed order so one rate never reshuffles another. ``timeout_applied_share`` of the
    timeouts happen after the amendment was applied. A burst refuses ``burst_length`` calls
    in a row with RateLimited. Opens are not subject to faults or the allowance: traild never
    opens positions in production; paper opens only stand in for the trading app.
    """

    def __init__(
        self,
        instruments: InstrumentTable | None = None,
        *,
        latency_ms: float = 0.0,
        min_stop_distance_pips: float = 0.0,
        allowance_per_minute: int | None = None,
        reject_rate: float = 0.0,
        timeout_rate: float = 0.0,
        timeout_applied_share: float = 0.5,
        error_rate: float = 0.0,
        burst_rate: float = 0.0,
        burst_length: int = 3,
        seed: int = 0,
        deal_prefix: str | None = None,
    ) -> None:
        rates = FaultRates(error_rate, timeout_rate, timeout_applied_share, reject_rate, burst_rate)
        if latency_ms < 0 or min_stop_distance_pips < 0 or burst_length < 1:
            raise ValueError("latency, minimum stop distance and burst length must be positive")
        if allowance_per_minute is not None and allowance_per_minute < 1:
            raise ValueError("allowance_per_minute must be at least 1")
        self._n = {f.name: 0 for f in fields(PaperStatistics)}
        prefix = deal_prefix or f"PAPER-{secrets.token_hex(3).upper()}-"
        self._book = Book(instruments or InstrumentTable(), self._n, prefix, min_stop_distance_pips)
        self._faults = Faults(
            self._n, rates, latency_ms=latency_ms, allowance_per_minute=allowance_per_minute,
            burst_length=burst_length, seed=seed,
        )  # fmt: skip
        self._send, self._receive = trio.open_memory_channel[BrokerEvent](math.inf)

    def configure(
        self,
        *,
        latency_ms: float,
        min_stop_distance_pips: float,
        allowance_per_minute: int | None,
        reject_rate: float,
        timeout_rate: float,
        error_rate: float,
        burst_rate: float,
    ) -> None:
        """A reload: new latency, dealing rule, allowance and fault rates from the next call
        (the seeded random sequence continues; ``timeout_applied_share`` stays)."""
        applied = self._faults.rates.timeout_applied
        rates = FaultRates(error_rate, timeout_rate, applied, reject_rate, burst_rate)
        self._faults.configure(rates, latency_ms, allowance_per_minute)
        self._book.min_stop = min_stop_distance_pips

    # -- ticks and opens ----------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> list[BrokerEvent]:
        """Apply an accepted tick: exits of open positions first, then pending fills.

        Returns the events this tick caused: closes, then fills and refused orders in the
        order they were submitted.
        """
        return self._book.on_tick(tick)

    def submit_open(self, request: OpenRequest) -> str:
        """Queue an open for the next tick of its epic; returns the deal id (sync, no wait)."""
        return self._book.queue(request, None).deal_id

    async def open_position(self, request: OpenRequest) -> Position:
        """Open at the next tick of the epic (ask for BUY, bid for SELL).

        Raises BrokerRejected when the stop or limit is invalid at that tick. Cancelling the
        wait does not withdraw the order, as with a real broker.
        """
        order = self._book.queue(request, trio.Event())
        assert order.done is not None
        await order.done.wait()
        if order.error is not None:
            raise order.error
        assert order.position is not None
        return order.position

    # -- outside a tick -------------------------------------------------------------------------
    def knows(self, deal_id: str) -> bool:
        """The position is in the book (open)."""
        return deal_id in self._book.positions

    def add_position(self, position: Position) -> None:
        """A position opened outside traild (another app, before a restart).

        Ticks before its ``opened_at``, and its entry tick, never close it (``EntryGate``): a
        replay restarted from the beginning must not stop a trade out before it existed.

        run() reports it, timed by its ``opened_at`` or else the epic's latest quote; with
        neither it is only found through ``open_positions()``, as after a restart.
        """
        e = self._book.restore(position)
        quote = self._book.quotes.get(position.epic)
        ts = position.opened_at or (quote.ts if quote else None)
        if ts is not None:
            self._send.send_nowait(PositionOpened(e.position(), ts, {"source": "external"}))

    def close_position(self, deal_id: str) -> PositionClosed:
        """Close by hand at the latest quote (bid for BUY, ask for SELL); run() reports it."""
        e = self._book.positions.get(deal_id)
        quote = self._book.quotes.get(e.epic) if e is not None else None
        if e is None or quote is None:
            raise BrokerRejected(f"paper broker: cannot close {deal_id}: no position or no quote")
        price = e.inst.to_ticks(quote.bid if e.direction is Direction.BUY else quote.ask)
        event = self._book.close(e, quote.ts, "manual", price)
        self._send.send_nowait(event)
        return event

    async def run(self, emit: EventSink) -> None:
        """Report out-of-tick events (manual closes, external positions) until cancelled."""
        async for event in self._receive:
            await emit(event)

    def drain_events(self) -> list[BrokerEvent]:
        """Take the out-of-tick events queued for run() (tests without a background task)."""
        events: list[BrokerEvent] = []
        while True:
            try:
                events.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                return events

    # -- the Broker port ------------------------------------------------------------------------
    async def open_positions(self) -> list[Position]:
        await trio.lowlevel.checkpoint()
        return [e.position() for e in self._book.positions.values()]

    async def get_position(self, deal_id: str) -> Position | None:
        await trio.lowlevel.checkpoint()
        e = self._book.positions.get(deal_id)
        return None if e is None else e.position()

    def min_stop_distance_pips(self, epic: str) -> float:
        return self._book.min_stop_distance_pips(epic)

    def allowance_per_minute(self) -> int | None:
        return self._faults.allowance

    async def amend_stop(self, deal_id: str, stop: float, limit: float | None) -> Confirmation:
        """Set the stop after ``latency_ms``; faults as configured; the limit is never dropped."""
        self._n["amend_calls"] += 1
        self._faults.admit()
        await self._faults.wait()
        fault = self._faults.draw()
        if fault is Fault.UNAVAILABLE:
            raise BrokerUnavailable("paper broker: simulated 503 Service Unavailable")
        if fault is Fault.TIMEOUT_APPLIED:
            self._book.amend(deal_id, stop, limit)
        if fault in (Fault.TIMEOUT, Fault.TIMEOUT_APPLIED):
            raise BrokerTimeout(f"paper broker: simulated timeout amending {deal_id}")
        if fault is Fault.REJECT:
            return self._book.refuse("simulated rejection")
        return self._book.amend(deal_id, stop, limit)

    def statistics(self) -> PaperStatistics:
        counts = dict(self._n)
        counts["open_positions"] = len(self._book.positions)
        counts["pending_opens"] = sum(len(o) for o in self._book.orders.values())
        return PaperStatistics(**counts)
