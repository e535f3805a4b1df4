"""The paper broker: an in-memory account that fills, stops out and amends like IG would.

Prices are compared in integer ticks. Stops and limits trigger on the bid for a BUY and on the
ask for a SELL and fill at the level, or at the tick price when the tick gapped through it
(SPEC §2 step 1). Fill and close times are tick times. Amendments wait ``latency_ms`` (trio
time), are checked against the latest quote, and can be made to fail on purpose with seeded
fault injection: rejections, timeouts (applied or not: outcome unknown), 5xx errors,
rate-limit bursts and a per-minute allowance.

Events: ``on_tick`` returns what that tick caused (exits, fills, refused orders), so the caller
handles them before the tick reaches the actors (deterministic, like ``traild simulate``);
they are not sent again through ``run(emit)``, which reports the events that arise outside a
tick: manual closes and positions added from outside.
"""

from __future__ import annotations

import math
import random
import secrets
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime

import trio

from traild.core.entry import EntryGate
from traild.core.errors import (
    BrokerRejected,
    BrokerTimeout,
    BrokerUnavailable,
    InstrumentError,
    RateLimited,
)
from traild.core.instruments import Instrument, InstrumentTable, to_centipips
from traild.core.messages import (
    Confirmation,
    Direction,
    OpenRefused,
    OpenRequest,
    Position,
    PositionClosed,
    PositionOpened,
    Tick,
)
from traild.ports import BrokerEvent, EventSink

WINDOW_S = 60.0  # the allowance is per minute


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


@dataclass(slots=True)
class _Entry:
    """One open position; stop and limit in integer ticks."""

    deal_id: str
    epic: str
    direction: Direction
    size: float
    inst: Instrument
    level: int
    stop: int | None
    limit: int | None
    opened_at: datetime | None
    gate: EntryGate | None = None  # restored positions: no exits before they opened

    def position(self) -> Position:
        to_price = self.inst.to_price
        return Position(
            self.deal_id,
            self.epic,
            self.direction,
            self.size,
            to_price(self.level),
            None if self.stop is None else to_price(self.stop),
            None if self.limit is None else to_price(self.limit),
            self.opened_at,
        )


def _guard(entries: Iterable[_Entry]) -> tuple[float, float, float, float]:
    """Exit thresholds of a book, in ticks: no position exits on a tick with
    ``buy_stop < bid < buy_limit`` and ``sell_limit < ask < sell_stop`` (the highest BUY stop,
    the lowest BUY limit, the highest SELL limit, the lowest SELL stop)."""
    buy_stop = sell_limit = -math.inf
    buy_limit = sell_stop = math.inf
    for e in entries:
        if e.direction is Direction.BUY:
            if e.stop is not None:
                buy_stop = max(buy_stop, e.stop)
            if e.limit is not None:
                buy_limit = min(buy_limit, e.limit)
        else:
            if e.stop is not None:
                sell_stop = min(sell_stop, e.stop)
            if e.limit is not None:
                sell_limit = max(sell_limit, e.limit)
    return buy_stop, buy_limit, sell_limit, sell_stop


@dataclass(slots=True)
class _Order:
    """An open request waiting for the next tick of its epic."""

    request: OpenRequest
    deal_id: str
    done: trio.Event | None = None
    position: Position | None = None
    error: BrokerRejected | None = None


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
        for name, rate in (
            ("reject_rate", reject_rate),
            ("timeout_rate", timeout_rate),
            ("timeout_applied_share", timeout_applied_share),
            ("error_rate", error_rate),
            ("burst_rate", burst_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {rate}")
        if latency_ms < 0 or min_stop_distance_pips < 0 or burst_length < 1:
            raise ValueError("latency, minimum stop distance and burst length must be positive")
        if allowance_per_minute is not None and allowance_per_minute < 1:
            raise ValueError("allowance_per_minute must be at least 1")
        self._instruments = instruments or InstrumentTable()
        self._latency = latency_ms / 1000.0
        self._min_stop = min_stop_distance_pips
        self._allowance = allowance_per_minute
        self._rates = (error_rate, timeout_rate, timeout_applied_share, reject_rate)
        self._burst_rate = burst_rate
        self._burst_length = burst_length
        self._rng = random.Random(seed)
        self._prefix = deal_prefix or f"PAPER-{secrets.token_hex(3).upper()}-"
        self._seq = 0
        self._refs = 0
        self._positions: dict[str, _Entry] = {}
        self._by_epic: dict[str, dict[str, _Entry]] = {}
        # Per epic: the directional exit thresholds of its book (see _quiet); None = recompute.
        self._guards: dict[str, tuple[float, float, float, float] | None] = {}
        # Per epic: restored positions whose entry gate is not open yet; every tick goes
        # through their gates (also those the exit guard lets pass unchecked), so the gate
        # knows which ticks before the open it has seen.
        self._gated: dict[str, list[_Entry]] = {}
        self._orders: dict[str, list[_Order]] = {}
        self._quotes: dict[str, Tick] = {}
        self._window: deque[float] = deque()  # request times, oldest first
        self._burst_left = 0
        self._send, self._receive = trio.open_memory_channel[BrokerEvent](math.inf)
        self._n = {f.name: 0 for f in fields(PaperStatistics)}

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
        for name, rate in (
            ("reject_rate", reject_rate),
            ("timeout_rate", timeout_rate),
            ("error_rate", error_rate),
            ("burst_rate", burst_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {rate}")
        self._latency = latency_ms / 1000.0
        self._min_stop = min_stop_distance_pips
        self._allowance = allowance_per_minute
        self._rates = (error_rate, timeout_rate, self._rates[2], reject_rate)
        self._burst_rate = burst_rate

    # -- ticks --------------------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> list[BrokerEvent]:
        """Apply an accepted tick: exits of open positions first, then pending fills.

        Returns the events this tick caused: closes, then fills and refused orders in the
        order they were submitted.
        """
        self._n["ticks"] += 1
        self._quotes[tick.epic] = tick
        events: list[BrokerEvent] = []
        held = self._by_epic.get(tick.epic)
        if held:
            waiting = self._gate_pass(tick)
            inst = next(iter(held.values())).inst  # one epic, one instrument
            bid, ask = inst.to_ticks(tick.bid), inst.to_ticks(tick.ask)
            guard = self._guards.get(tick.epic)
            if guard is None:
                guard = self._guards[tick.epic] = _guard(held.values())
            if guard[0] < bid < guard[1] and guard[2] < ask < guard[3]:
                held = {}  # no stop or limit of this epic is reached: nothing to check
            for entry in list(held.values()):
                if entry.deal_id in waiting:
                    continue
                closed = self._check_exit(entry, tick, bid, ask)
                if closed is not None:
                    events.append(closed)
        orders = self._orders.pop(tick.epic, None)
        events.extend(self._fill(order, tick) for order in orders or ())
        return events

    def _gate_pass(self, tick: Tick) -> set[str]:
        """The restored positions of ``tick``'s epic that must not see it (before their open,
        or their entry tick); a gate that opened leaves the list."""
        gated = self._gated.get(tick.epic)
        if not gated:
            return set()
        waiting = set()
        for entry in gated:
            assert entry.gate is not None
            if not entry.gate.admits(tick.ts):
                waiting.add(entry.deal_id)
        self._gated[tick.epic] = [e for e in gated if e.gate is not None and not e.gate.is_open]
        return waiting

    def _check_exit(self, e: _Entry, tick: Tick, bid: int, ask: int) -> PositionClosed | None:
        """Stop or limit hit by this tick (``bid``/``ask`` in ticks)?"""
        s = e.direction.sign
        x = bid if s > 0 else -ask
        if e.stop is not None and x <= s * e.stop:
            gap = x < s * e.stop
            return self._close(e, tick.ts, "stop", s * x if gap else e.stop, gap)
        if e.limit is not None and x >= s * e.limit:
            gap = x > s * e.limit
            return self._close(e, tick.ts, "limit", s * x if gap else e.limit, gap)
        return None

    def _close(
        self, e: _Entry, ts: datetime, reason: str, price: int, gap: bool = False
    ) -> PositionClosed:
        """Remove ``e`` from the book; the fill is ``price`` ticks (``gap``: beyond the level)."""
        del self._positions[e.deal_id]
        del self._by_epic[e.epic][e.deal_id]
        self._guards[e.epic] = None
        if e.gate is not None and not e.gate.is_open:
            self._gated[e.epic] = [g for g in self._gated.get(e.epic, []) if g is not e]
        self._n[f"closed_{reason}"] += 1
        self._n["gap_fills"] += gap
        return PositionClosed(e.deal_id, e.inst.to_price(price), reason, ts, gap)

    # -- opening ------------------------------------------------------------------------------
    def submit_open(self, request: OpenRequest) -> str:
        """Queue an open for the next tick of its epic; returns the deal id (sync, no wait)."""
        return self._queue(request, None).deal_id

    async def open_position(self, request: OpenRequest) -> Position:
        """Open at the next tick of the epic (ask for BUY, bid for SELL).

        Raises BrokerRejected when the stop or limit is invalid at that tick. Cancelling the
        wait does not withdraw the order, as with a real broker.
        """
        order = self._queue(request, trio.Event())
        assert order.done is not None
        await order.done.wait()
        if order.error is not None:
            raise order.error
        assert order.position is not None
        return order.position

    def _queue(self, request: OpenRequest, done: trio.Event | None) -> _Order:
        self._resolve(request.epic)
        deal_id = request.deal_id or self._next_deal_id()
        pending = {o.deal_id for orders in self._orders.values() for o in orders}
        if deal_id in self._positions or deal_id in pending:
            raise BrokerRejected(f"paper broker: duplicate deal id {deal_id}")
        order = _Order(request, deal_id, done)
        self._orders.setdefault(request.epic, []).append(order)
        return order

    def _fill(self, order: _Order, tick: Tick) -> PositionOpened | OpenRefused:
        req = order.request
        inst = self._resolve(req.epic)
        s = req.direction.sign
        entry = inst.to_ticks(tick.ask if s > 0 else tick.bid)
        stop = _level(inst, entry, -s, req.stop_pips, req.stop)
        limit = _level(inst, entry, s, req.limit_pips, req.limit)
        problem = self._stop_problem(inst, req.epic, req.direction, stop, tick)
        if problem is None and limit is not None:
            problem = _limit_problem(inst, req.direction, limit, tick)
        if problem is not None:
            self._n["opens_rejected"] += 1
            order.error = BrokerRejected(f"paper broker: open {order.deal_id} refused: {problem}")
            if order.done is not None:
                order.done.set()
            return OpenRefused(order.deal_id, problem, tick.ts)
        e = _Entry(
            order.deal_id, req.epic, req.direction, req.size, inst, entry, stop, limit, tick.ts
        )
        self._add(e)
        self._n["fills"] += 1
        order.position = e.position()
        if order.done is not None:
            order.done.set()
        return PositionOpened(order.position, tick.ts)

    def _add(self, e: _Entry) -> None:
        self._positions[e.deal_id] = e
        self._by_epic.setdefault(e.epic, {})[e.deal_id] = e
        self._guards[e.epic] = None

    def _next_deal_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}{self._seq:06d}"

    # -- outside a tick -------------------------------------------------------------------------
    def knows(self, deal_id: str) -> bool:
        """The position is in the book (open)."""
        return deal_id in self._positions

    def add_position(self, position: Position) -> None:
        """A position opened outside traild (another app, before a restart).

        Ticks before its ``opened_at``, and its entry tick, never close it (``EntryGate``): a
        replay restarted from the beginning must not stop a trade out before it existed.

        run() reports it, timed by its ``opened_at`` or else the epic's latest quote; with
        neither it is only found through ``open_positions()``, as after a restart.
        """
        if position.deal_id in self._positions:
            raise BrokerRejected(f"paper broker: duplicate deal id {position.deal_id}")
        inst = self._resolve(position.epic)
        ticks = inst.to_ticks
        e = _Entry(
            position.deal_id,
            position.epic,
            position.direction,
            position.size,
            inst,
            ticks(position.level),
            None if position.stop is None else ticks(position.stop),
            None if position.limit is None else ticks(position.limit),
            position.opened_at,
            EntryGate(position.opened_at, skip_entry_tick=True),
        )
        self._add(e)
        self._gated.setdefault(e.epic, []).append(e)
        quote = self._quotes.get(position.epic)
        ts = position.opened_at or (quote.ts if quote else None)
        if ts is not None:
            self._send.send_nowait(PositionOpened(e.position(), ts, {"source": "external"}))

    def close_position(self, deal_id: str) -> PositionClosed:
        """Close by hand at the latest quote (bid for BUY, ask for SELL); run() reports it."""
        e = self._positions.get(deal_id)
        quote = self._quotes.get(e.epic) if e is not None else None
        if e is None or quote is None:
            raise BrokerRejected(f"paper broker: cannot close {deal_id}: no position or no quote")
        price = e.inst.to_ticks(quote.bid if e.direction is Direction.BUY else quote.ask)
        event = self._close(e, quote.ts, "manual", price)
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
        return [e.position() for e in self._positions.values()]

    async def get_position(self, deal_id: str) -> Position | None:
        await trio.lowlevel.checkpoint()
        e = self._positions.get(deal_id)
        return None if e is None else e.position()

    def min_stop_distance_pips(self, epic: str) -> float:
        inst = self._instruments.resolve(epic)
        return max(self._min_stop, float(inst.min_stop_distance_pips))

    def allowance_per_minute(self) -> int | None:
        return self._allowance

    async def amend_stop(self, deal_id: str, stop: float, limit: float | None) -> Confirmation:
        """Set the stop after ``latency_ms``; faults as configured; the limit is never dropped."""
        self._n["amend_calls"] += 1
        self._admit()
        if self._latency > 0:
            await trio.sleep(self._latency)
        else:
            await trio.lowlevel.checkpoint()
        error_rate, timeout_rate, applied_share, reject_rate = self._rates
        draws = [self._rng.random() for _ in range(4)]
        if draws[0] < error_rate:
            self._n["unavailable"] += 1
            raise BrokerUnavailable("paper broker: simulated 503 Service Unavailable")
        if draws[1] < timeout_rate:
            self._n["timeouts"] += 1
            if draws[2] < applied_share:
                self._n["timeouts_applied"] += 1
                self._apply(deal_id, stop, limit)
            raise BrokerTimeout(f"paper broker: simulated timeout amending {deal_id}")
        if draws[3] < reject_rate:
            return self._refuse("simulated rejection")
        return self._apply(deal_id, stop, limit)

    def _admit(self) -> None:
        """Rate limits before anything else, as a broker's gateway answers 429 at once."""
        starts_burst = self._rng.random() < self._burst_rate
        if self._burst_left == 0 and starts_burst:
            self._burst_left = self._burst_length
        if self._burst_left > 0:
            self._burst_left -= 1
            self._n["rate_limited"] += 1
            raise RateLimited("paper broker: simulated rate-limit burst", retry_after=1.0)
        if self._allowance is None:
            return
        now = trio.current_time()
        window = self._window
        while window and window[0] <= now - WINDOW_S:  # times only grow: drop from the left
            window.popleft()
        if len(self._window) >= self._allowance:
            self._n["rate_limited"] += 1
            retry = self._window[0] + WINDOW_S - now
            raise RateLimited(
                f"paper broker: allowance of {self._allowance} requests per minute exceeded",
                retry_after=retry,
            )
        self._window.append(now)

    def _apply(self, deal_id: str, stop: float, limit: float | None) -> Confirmation:
        e = self._positions.get(deal_id)
        if e is None:
            return self._refuse(f"position {deal_id} not found (closed or unknown)")
        level = e.inst.to_ticks(stop)
        if e.stop is not None and e.direction.sign * (level - e.stop) < 0:
            # Defence in depth: traild never loosens a stop; a request that would is refused
            # here too (the real broker would take it).
            return self._refuse("the amendment would loosen the stop")
        new_limit = e.limit if limit is None else e.inst.to_ticks(limit)
        quote = self._quotes.get(e.epic)
        if quote is not None:
            problem = self._stop_problem(e.inst, e.epic, e.direction, level, quote)
            if problem is None and new_limit is not None and new_limit != e.limit:
                problem = _limit_problem(e.inst, e.direction, new_limit, quote)
            if problem is not None:
                return self._refuse(problem)
        e.stop, e.limit = level, new_limit
        self._guards[e.epic] = None
        self._n["amend_accepted"] += 1
        return Confirmation(True, e.inst.to_price(level), self._next_ref())

    def _refuse(self, reason: str) -> Confirmation:
        self._n["amend_rejected"] += 1
        return Confirmation(False, None, self._next_ref(), reason)

    def _next_ref(self) -> str:
        self._refs += 1
        return f"{self._prefix}REF{self._refs:06d}"

    def _stop_problem(
        self, inst: Instrument, epic: str, direction: Direction, stop: int | None, quote: Tick
    ) -> str | None:
        """Why ``stop`` (ticks) cannot be set against ``quote``, or None when it can."""
        if stop is None:
            return None
        s = direction.sign
        market = inst.to_ticks(quote.bid if s > 0 else quote.ask)
        distance = s * (market - stop)
        if distance <= 0:
            return "stop on the wrong side of the market"
        min_pips = self.min_stop_distance_pips(epic)
        if distance < inst.centipips_to_ticks_ceil(to_centipips(min_pips)):
            return f"stop too close: {inst.pips(distance):g} pips, minimum {min_pips:g}"
        return None

    def _resolve(self, epic: str) -> Instrument:
        try:
            return self._instruments.resolve(epic)
        except InstrumentError as exc:
            raise BrokerRejected(f"paper broker: {exc}") from None

    def statistics(self) -> PaperStatistics:
        counts = dict(self._n)
        counts["open_positions"] = len(self._positions)
        counts["pending_opens"] = sum(len(o) for o in self._orders.values())
        return PaperStatistics(**counts)


def _level(
    inst: Instrument, entry: int, side: int, pips: float | None, price: float | None
) -> int | None:
    """An absolute level in ticks: the price itself, or ``pips`` from entry towards ``side``.

    A distance in pips is rounded away from the entry, never closer than asked.
    """
    if price is not None:
        return inst.to_ticks(price)
    if pips is None:
        return None
    return entry + side * inst.centipips_to_ticks_ceil(to_centipips(pips))


def _limit_problem(inst: Instrument, direction: Direction, limit: int, quote: Tick) -> str | None:
    s = direction.sign
    market = inst.to_ticks(quote.bid if s > 0 else quote.ask)
    return "limit on the wrong side of the market" if s * (limit - market) <= 0 else None
