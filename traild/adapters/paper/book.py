"""The paper broker's book: open positions, orders waiting for a tick, fills, exits, amendments.

Prices are compared in integer ticks. Stops and limits trigger on the bid for a BUY and on the
ask for a SELL and fill at the level, or at the tick price when the tick gapped through it
(SPEC §2 step 1). Fill and close times are tick times. An amendment is checked against the
epic's latest quote and the dealing rule's minimum stop distance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import trio

from traild.core.entry import EntryGate
from traild.core.errors import BrokerRejected, InstrumentError
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
from traild.ports import BrokerEvent


@dataclass(slots=True)
class Entry:
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


@dataclass(slots=True)
class Order:
    """An open request waiting for the next tick of its epic."""

    request: OpenRequest
    deal_id: str
    done: trio.Event | None = None
    position: Position | None = None
    error: BrokerRejected | None = None


class Book:
    """The positions and orders of the paper account; ``counts`` are its statistics."""

    def __init__(
        self, instruments: InstrumentTable, counts: dict[str, int], prefix: str, min_stop: float
    ) -> None:
        self._instruments = instruments
        self._n = counts
        self._prefix = prefix
        self.min_stop = min_stop  # the configured minimum stop distance (pips)
        self._seq = 0
        self._refs = 0
        self.positions: dict[str, Entry] = {}
        self._by_epic: dict[str, dict[str, Entry]] = {}
        # Per epic: the directional exit thresholds of its book (see _guard); None = recompute.
        self._guards: dict[str, tuple[float, float, float, float] | None] = {}
        # Per epic: restored positions whose entry gate is not open yet; every tick goes
        # through their gates (also those the exit guard lets pass unchecked), so the gate
        # knows which ticks before the open it has seen.
        self._gated: dict[str, list[Entry]] = {}
        self.orders: dict[str, list[Order]] = {}
        self.quotes: dict[str, Tick] = {}

    # -- ticks --------------------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> list[BrokerEvent]:
        """Exits of open positions first, then pending fills (see ``PaperBroker.on_tick``)."""
        self._n["ticks"] += 1
        self.quotes[tick.epic] = tick
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
        orders = self.orders.pop(tick.epic, None)
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

    def _check_exit(self, e: Entry, tick: Tick, bid: int, ask: int) -> PositionClosed | None:
        """Stop or limit hit by this tick (``bid``/``ask`` in ticks)?"""
        s = e.direction.sign
        x = bid if s > 0 else -ask
        if e.stop is not None and x <= s * e.stop:
            gap = x < s * e.stop
            return self.close(e, tick.ts, "stop", s * x if gap else e.stop, gap)
        if e.limit is not None and x >= s * e.limit:
            gap = x > s * e.limit
            return self.close(e, tick.ts, "limit", s * x if gap else e.limit, gap)
        return None

    def close(
        self, e: Entry, ts: datetime, reason: str, price: int, gap: bool = False
    ) -> PositionClosed:
        """Remove ``e`` from the book; the fill is ``price`` ticks (``gap``: beyond the level)."""
        del self.positions[e.deal_id]
        del self._by_epic[e.epic][e.deal_id]
        self._guards[e.epic] = None
        if e.gate is not None and not e.gate.is_open:
            self._gated[e.epic] = [g for g in self._gated.get(e.epic, []) if g is not e]
        self._n[f"closed_{reason}"] += 1
        self._n["gap_fills"] += gap
        return PositionClosed(e.deal_id, e.inst.to_price(price), reason, ts, gap)

    # -- opening ------------------------------------------------------------------------------
    def queue(self, request: OpenRequest, done: trio.Event | None) -> Order:
        """An order for the next tick of its epic (``done`` is set when it is decided)."""
        self.resolve(request.epic)
        deal_id = request.deal_id or self._next_deal_id()
        pending = {o.deal_id for orders in self.orders.values() for o in orders}
        if deal_id in self.positions or deal_id in pending:
            raise BrokerRejected(f"paper broker: duplicate deal id {deal_id}")
        order = Order(request, deal_id, done)
        self.orders.setdefault(request.epic, []).append(order)
        return order

    def _fill(self, order: Order, tick: Tick) -> PositionOpened | OpenRefused:
        req = order.request
        inst = self.resolve(req.epic)
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
        e = Entry(
            order.deal_id, req.epic, req.direction, req.size, inst, entry, stop, limit, tick.ts
        )
        self._add(e)
        self._n["fills"] += 1
        order.position = e.position()
        if order.done is not None:
            order.done.set()
        return PositionOpened(order.position, tick.ts)

    def restore(self, position: Position) -> Entry:
        """A position opened outside; ticks before its ``opened_at``, and its entry tick,
        never close it (``EntryGate``)."""
        if position.deal_id in self.positions:
            raise BrokerRejected(f"paper broker: duplicate deal id {position.deal_id}")
        inst = self.resolve(position.epic)
        ticks = inst.to_ticks
        e = Entry(
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
        return e

    def _add(self, e: Entry) -> None:
        self.positions[e.deal_id] = e
        self._by_epic.setdefault(e.epic, {})[e.deal_id] = e
        self._guards[e.epic] = None

    def _next_deal_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}{self._seq:06d}"

    # -- amendments ---------------------------------------------------------------------------
    def amend(self, deal_id: str, stop: float, limit: float | None) -> Confirmation:
        """Set the stop (and limit: kept when None) if the latest quote allows it."""
        e = self.positions.get(deal_id)
        if e is None:
            return self.refuse(f"position {deal_id} not found (closed or unknown)")
        level = e.inst.to_ticks(stop)
        if e.stop is not None and e.direction.sign * (level - e.stop) < 0:
            # Defence in depth: traild never loosens a stop; a request that would is refused
            # here too (the real broker would take it).
            return self.refuse("the amendment would loosen the stop")
        new_limit = e.limit if limit is None else e.inst.to_ticks(limit)
        quote = self.quotes.get(e.epic)
        if quote is not None:
            problem = self._stop_problem(e.inst, e.epic, e.direction, level, quote)
            if problem is None and new_limit is not None and new_limit != e.limit:
                problem = _limit_problem(e.inst, e.direction, new_limit, quote)
            if problem is not None:
                return self.refuse(problem)
        e.stop, e.limit = level, new_limit
        self._guards[e.epic] = None
        self._n["amend_accepted"] += 1
        return Confirmation(True, e.inst.to_price(level), self._next_ref())

    def refuse(self, reason: str) -> Confirmation:
        self._n["amend_rejected"] += 1
        return Confirmation(False, None, self._next_ref(), reason)

    def _next_ref(self) -> str:
        self._refs += 1
        return f"{self._prefix}REF{self._refs:06d}"

    def min_stop_distance_pips(self, epic: str) -> float:
        inst = self._instruments.resolve(epic)
        return max(self.min_stop, float(inst.min_stop_distance_pips))

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

    def resolve(self, epic: str) -> Instrument:
        try:
            return self._instruments.resolve(epic)
        except InstrumentError as exc:
            raise BrokerRejected(f"paper broker: {exc}") from None


def _guard(entries: Iterable[Entry]) -> tuple[float, float, float, float]:
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
