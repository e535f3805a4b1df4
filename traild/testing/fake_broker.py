"""A Broker-port implementation for deterministic simulations: latency, faults, a market.

Unlike the scripted test broker (which answers at once and so hides every race), this one
takes time: every request is *applied* at the broker part-way through its latency and
*answered* at the end of it, so answers of different trades come back out of order and an
amendment can land while traild is already deciding the next one. A request keeps going after
its caller is cancelled (an HTTP request already sent is not taken back by a crash).

Modelled on how a retail CFD broker (IG) behaves, not on traild's adapters:
* a stop is refused on the wrong side of, or closer than the minimum stop distance to, the
  latest quote it was given (``on_market``); a BUY is valued and stopped on the bid, a SELL on
  the ask; positions close when the market crosses their stop or limit;
* faults while ``faults_on``: refusals, timeouts (applied or not: the outcome is unknown to the
  caller), 503s (BrokerUnavailable), bursts of RateLimited, failing position reads;
* stops changed "at the broker" by someone else (``external_change``), pushed as
  ``PositionAmended`` like IG's OPU stream; own amendments are pushed too (``push_own``).

Every stop change is recorded with its trio time and source ('traild' | 'external'). All
randomness comes from the one ``random.Random`` given to the constructor. The latency and
fault models and the positions' book are in ``fake_book``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import trio

from traild.core.errors import BrokerTimeout, BrokerUnavailable, RateLimited
from traild.core.instruments import InstrumentTable, to_centipips
from traild.core.messages import (
    Confirmation,
    Direction,
    OpenRequest,
    Position,
    PositionAmended,
    PositionClosed,
    Tick,
)
from traild.ports import BrokerEvent, EventSink
from traild.testing.fake_book import (
    T0,
    FaultRates,
    LatencyModel,
    SimPosition,
    Source,
    StopChange,
)
from traild.testing.fence import Fence

__all__ = ["FakeBroker", "FaultRates", "LatencyModel", "SimPosition", "StopChange"]


@dataclass(slots=True)
class _Request:
    deal_id: str
    level: int | None
    limit: float | None
    apply_at: float
    outcome: str  # ok | refuse | timeout_applied | timeout_lost | unavailable
    result: Confirmation | None = None


class FakeBroker:
    """The Broker port over an in-memory book; see the module docstring."""

    def __init__(
        self,
        rng: random.Random,
        instruments: InstrumentTable,
        latency: LatencyModel | None = None,
        faults: FaultRates | None = None,
        min_stop_pips: dict[str, float] | None = None,
        fence: Fence | None = None,
        push_own: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.rng = rng
        self.instruments = instruments
        self.latency = latency or LatencyModel()
        self.faults = faults or FaultRates()
        self.min_stop = dict(min_stop_pips or {})
        self.fence = fence or Fence()
        self.push_own = push_own
        self.clock = clock or (lambda: T0 + timedelta(seconds=trio.current_time()))
        self.faults_on = False
        self.on_apply: Callable[[str], None] | None = None  # after traild's change lands
        self.positions: dict[str, SimPosition] = {}
        self.quotes: dict[str, Tick] = {}
        self.counts: Counter[str] = Counter()
        self._pending: list[tuple[float, int, _Request]] = []
        self._seq = 0
        self._refs = 0
        self._burst_left = 0
        self._fail_reads = 0
        self._sink: trio.MemorySendChannel[BrokerEvent] | None = None
        self._new_request = trio.Event()

    # -- set-up and faults (the harness) ------------------------------------------------------
    def add_position(self, position: Position) -> None:
        inst = self.instruments.resolve(position.epic)
        to = inst.to_ticks
        stop = None if position.stop is None else to(position.stop)
        sim = SimPosition(
            position.deal_id,
            position.epic,
            inst,
            position.direction,
            position.size,
            to(position.level),
            stop,
            None if position.limit is None else to(position.limit),
            position.opened_at or self.clock(),
        )
        sim.history.append(StopChange(trio.current_time(), stop, "initial"))
        self.positions[position.deal_id] = sim

    def fail_next_reads(self, n: int) -> None:
        """The next ``n`` position reads fail (503), whatever ``faults_on`` says."""
        self._fail_reads += n

    def external_change(self, deal_id: str, remove: bool, loosen_pips: float) -> bool:
        """Someone else moved the stop away from the market (or removed it); pushed as
        PositionAmended. False when the position is not open."""
        pos = self.positions.get(deal_id)
        if pos is None or pos.closed_at is not None:
            return False
        if remove or pos.stop is None:
            level = None
            self.counts["external_remove"] += 1
        else:
            ticks = pos.inst.centipips_to_ticks_ceil(to_centipips(loosen_pips))
            level = pos.stop - pos.direction.sign * ticks
            self.counts["external_loosen"] += 1
        self._set_stop(pos, level, "external")
        return True

    # -- the market ---------------------------------------------------------------------------
    def on_market(self, tick: Tick) -> list[PositionClosed]:
        """The latest quote of ``tick.epic``: positions whose stop or limit it crosses close
        (BUY on the bid, SELL on the ask); the closes are also pushed through ``run``."""
        self.process_due()
        self.quotes[tick.epic] = tick
        closed: list[PositionClosed] = []
        for pos in self.positions.values():
            if pos.epic != tick.epic or pos.closed_at is not None:
                continue
            event = self._check_exit(pos, tick)
            if event is not None:
                closed.append(event)
                self._emit(event)
        return closed

    def _check_exit(self, pos: SimPosition, tick: Tick) -> PositionClosed | None:
        s = pos.direction.sign
        x = s * pos.inst.to_ticks(tick.bid if s > 0 else tick.ask)
        if pos.stop is not None and x <= s * pos.stop:
            return self._close(pos, tick, "stop", pos.stop, x < s * pos.stop)
        if pos.limit is not None and x >= s * pos.limit:
            return self._close(pos, tick, "limit", pos.limit, x > s * pos.limit)
        return None

    def _close(
        self, pos: SimPosition, tick: Tick, reason: str, level: int, gap: bool
    ) -> PositionClosed:
        market = pos.inst.to_ticks(tick.bid if pos.direction is Direction.BUY else tick.ask)
        pos.exit_price = market if gap else level
        pos.closed_at = trio.current_time()
        pos.exit_reason = reason
        self.counts[f"closed_{reason}"] += 1
        return PositionClosed(pos.deal_id, pos.inst.to_price(pos.exit_price), reason, tick.ts, gap)

    # -- background: requests land at their time -----------------------------------------------
    async def serve(self) -> None:
        """Apply requests at their ``apply_at`` (whether or not their caller still waits)."""
        while True:
            if not self._pending:
                self._new_request = trio.Event()
                await self._new_request.wait()
                continue
            await trio.sleep_until(self._pending[0][0])
            self.process_due()

    def process_due(self) -> None:
        now = trio.current_time()
        while self._pending and self._pending[0][0] <= now:
            _, _, req = heapq.heappop(self._pending)
            req.result = self._apply(req)

    def _apply(self, req: _Request) -> Confirmation:
        pos = self.positions.get(req.deal_id)
        if pos is None or pos.closed_at is not None:
            self.counts["refused_not_found"] += 1
            return self._refuse(f"position {req.deal_id} not found")
        if req.outcome == "refuse":
            self.counts["refused_random"] += 1
            return self._refuse("simulated refusal")
        problem = self._stop_problem(pos, req.level)
        if problem is not None:
            self.counts["refused_rule"] += 1
            return self._refuse(problem)
        if req.limit is not None:
            pos.limit = pos.inst.to_ticks(req.limit)
        self._set_stop(pos, req.level, "traild", push=self.push_own)
        self.counts["applied"] += 1
        if self.on_apply is not None:
            self.on_apply(req.deal_id)
        level = None if req.level is None else pos.inst.to_price(req.level)
        return Confirmation(True, level, self._ref())

    def _stop_problem(self, pos: SimPosition, level: int | None) -> str | None:
        quote = self.quotes.get(pos.epic)
        if level is None or quote is None:
            return None
        s = pos.direction.sign
        market = pos.inst.to_ticks(quote.bid if s > 0 else quote.ask)
        distance = s * (market - level)
        if distance <= 0:
            return "stop on the wrong side of the market"
        minimum = pos.inst.centipips_to_ticks_ceil(
            to_centipips(self.min_stop_distance_pips(pos.epic))
        )
        if distance < minimum:
            return f"stop too close: {pos.inst.pips(distance):g} pips"
        return None

    def _set_stop(
        self, pos: SimPosition, level: int | None, source: Source, push: bool = True
    ) -> None:
        changed = level != pos.stop
        pos.stop = level
        if changed:
            pos.history.append(StopChange(trio.current_time(), level, source))
        if push and changed:
            p = pos.inst.to_price
            self._emit(
                PositionAmended(
                    pos.deal_id,
                    None if level is None else p(level),
                    None if pos.limit is None else p(pos.limit),
                    self.clock(),
                )
            )

    def _refuse(self, reason: str) -> Confirmation:
        return Confirmation(False, None, self._ref(), reason)

    def _ref(self) -> str:
        self._refs += 1
        return f"FAKE{self._refs:06d}"

    # -- the Broker port ----------------------------------------------------------------------
    async def amend_stop(self, deal_id: str, stop: float, limit: float | None) -> Confirmation:
        """Apply at a random point of a random latency, answer at its end (faults if on)."""
        await self._alive()
        self.counts["amend_calls"] += 1
        if self.faults_on and self._rate_limited():
            await trio.sleep(self.rng.uniform(0.005, 0.05))
            raise RateLimited("fake broker: 429", retry_after=self.rng.uniform(0.5, 3.0))
        latency = self.latency.draw(self.rng)
        outcome = self._outcome() if self.faults_on else "ok"
        pos = self.positions.get(deal_id)
        level = None if pos is None else pos.inst.to_ticks(stop)
        req = _Request(
            deal_id,
            level,
            limit,
            trio.current_time() + latency * self.rng.uniform(0.2, 0.8),
            outcome,
        )
        if outcome != "unavailable" and outcome != "timeout_lost":
            self._seq += 1
            heapq.heappush(self._pending, (req.apply_at, self._seq, req))
            self._new_request.set()
        await trio.sleep(latency)
        self.process_due()
        if outcome == "unavailable":
            self.counts["unavailable"] += 1
            raise BrokerUnavailable("fake broker: 503")
        if outcome.startswith("timeout"):
            self.counts[outcome] += 1
            raise BrokerTimeout("fake broker: no answer")
        assert req.result is not None
        return req.result

    def _rate_limited(self) -> bool:
        if self._burst_left == 0 and self.rng.random() < self.faults.rate_limit_burst:
            self._burst_left = self.faults.burst_length
        if self._burst_left > 0:
            self._burst_left -= 1
            self.counts["rate_limited"] += 1
            return True
        return False

    def _outcome(self) -> str:
        f, r = self.faults, self.rng.random()
        if r < f.unavailable:
            return "unavailable"
        if r < f.unavailable + f.timeout:
            return "timeout_applied" if self.rng.random() < f.timeout_applied else "timeout_lost"
        if r < f.unavailable + f.timeout + f.refuse:
            return "refuse"
        return "ok"

    async def get_position(self, deal_id: str) -> Position | None:
        await self._read()
        pos = self.positions.get(deal_id)
        return None if pos is None or pos.closed_at is not None else pos.position()

    async def open_positions(self) -> list[Position]:
        await self._read()
        return [p.position() for p in self.positions.values() if p.closed_at is None]

    async def _read(self) -> None:
        await self._alive()
        fail = self._fail_reads > 0 or (
            self.faults_on and self.rng.random() < self.faults.read_failure
        )
        await trio.sleep(self.rng.uniform(0.005, 0.2))
        self.process_due()
        if fail:
            self._fail_reads = max(0, self._fail_reads - 1)
            self.counts["read_failure"] += 1
            raise BrokerUnavailable("fake broker: 503 on a position read")

    async def _alive(self) -> None:
        """A call from a crashed runtime never reaches the broker (it is being cancelled)."""
        if self.fence.dead():
            await trio.sleep_forever()

    def submit_open(self, request: OpenRequest) -> str:
        raise BrokerUnavailable("fake broker: traild does not open positions here")

    def min_stop_distance_pips(self, epic: str) -> float:
        return self.min_stop.get(epic, 0.0)

    def allowance_per_minute(self) -> int | None:
        return None

    async def run(self, emit: EventSink) -> None:
        """Push closes and stop changes to ``emit``; events while nobody listens are lost
        (as a streaming connection's are)."""
        send, receive = trio.open_memory_channel[BrokerEvent](math.inf)
        self._sink = send
        try:
            async for event in receive:
                await emit(event)
        finally:
            if self._sink is send:
                self._sink = None

    def _emit(self, event: BrokerEvent) -> None:
        if self._sink is None:
            self.counts["events_lost"] += 1
            return
        self._sink.send_nowait(event)
