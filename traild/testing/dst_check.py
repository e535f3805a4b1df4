"""The invariants of the simulation, checked after every step (and the spin meter).

(a) The broker's stop never moves against the trade except by an 'external' change: every
    change traild makes at the broker is at least as tight as the stop it replaces.
(b) No database ``sl_price`` claims more than the broker has (never tighter than the broker's
    stop). After a stop was changed at the broker by someone else, traild gets a calm window of
    W seconds (no faults, runtime up) to restore it or to record the truth; before any such
    change the check is immediate.
(c) "The lock is owed": a trade whose favourable excursion reached the profit-lock trigger on a
    tick the runtime was given (bid for BUY, ask for SELL) and that then stays open through W
    seconds of calm (the broker accepts every valid amendment: no refusals, timeouts, 503s,
    429s, read failures, stop changes or crashes) during which the lock level stays placeable
    (at least the minimum stop distance plus a margin from the market on every tick) has its
    lock confirmed at the broker (stop at or beyond entry + profit_lock_pips) when that window
    ends. The settle phase at the end of every seed is such a window for every open trade.
(d) No busy-spin: a trio Instrument counts scheduler steps; more than ``per_instant`` steps
    without the clock moving, or ``per_second`` within one simulated second, is a spin.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import trio
import trio.testing

from traild.core.instruments import CENTI, Instrument, to_centipips
from traild.core.ladder import LadderPolicy
from traild.core.messages import Tick
from traild.testing.fake_book import SimPosition
from traild.testing.fake_broker import FakeBroker
from traild.testing.memory_store import SimStore

NAMES = {
    "a": "broker stop moved against the trade by traild",
    "b": "database sl_price tighter than the broker's stop",
    "c": "profit lock owed but not confirmed at the broker",
    "d": "busy-spin (scheduler steps without simulated time passing)",
    "error": "the runtime raised",
}


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str  # a | b | c | d | error
    t: float  # trio time of the first occurrence
    deal_id: str | None
    text: str

    def __str__(self) -> str:
        return f"({self.invariant}) t={self.t:.3f}s {self.deal_id or '-'}: {self.text}"


@dataclass(slots=True)
class _Deal:
    trade_id: int
    pos: SimPosition
    lock: int  # the profit-lock level (ticks)
    reached_at: float | None = None  # first published tick at or beyond the trigger
    unplaceable_at: float = -math.inf  # last tick on which the lock could not be placed
    room: int = 0  # ticks the market must stay beyond the lock for it to count as placeable
    checked: int = 0  # broker history entries already checked for (a)
    external: bool = False  # the broker's stop was ever changed by someone else


class Checker:
    """Feeds on what the harness does; collects violations (first per invariant and deal)."""

    def __init__(
        self,
        broker: FakeBroker,
        store: SimStore,
        deals: dict[str, int],
        policy: LadderPolicy,
        w: float,
        margin_pips: float = 2.0,
    ) -> None:
        self.broker, self.store, self.w = broker, store, w
        self.violations: list[Violation] = []
        self.repeats: Counter[str] = Counter()
        self._seen: set[tuple[str, str | None]] = set()
        self._trigger = to_centipips(policy.profit_lock_trigger_pips)
        lock_cp = to_centipips(policy.profit_lock_pips)
        self.deals: dict[str, _Deal] = {}
        for deal_id, trade_id in deals.items():
            pos = broker.positions[deal_id]
            lock = pos.entry + pos.direction.sign * pos.inst.centipips_to_ticks_ceil(lock_cp)
            pips = broker.min_stop_distance_pips(pos.epic) + margin_pips
            room = max(1, pos.inst.centipips_to_ticks_ceil(to_centipips(pips)))
            self.deals[deal_id] = _Deal(trade_id, pos, lock, room=room)

    def report(self, invariant: str, t: float, deal_id: str | None, text: str) -> None:
        key = (invariant, deal_id)
        if key in self._seen:
            self.repeats[invariant] += 1
            return
        self._seen.add(key)
        self.violations.append(Violation(invariant, t, deal_id, text))

    # -- feeding ------------------------------------------------------------------------------
    def observe(self, tick: Tick, published: bool) -> None:
        """A tick the broker was given (``published``: the runtime was given it too)."""
        now = trio.current_time()
        for d in self.deals.values():
            pos = d.pos
            if pos.epic != tick.epic or pos.closed_at is not None:
                continue
            s, inst = pos.direction.sign, pos.inst
            x = s * inst.to_ticks(tick.bid if s > 0 else tick.ask)
            if published and d.reached_at is None:
                mfe = x - s * pos.entry
                if mfe * CENTI >= self._trigger * inst.ticks_per_pip:
                    d.reached_at = now
            if x - s * d.lock < d.room:
                d.unplaceable_at = now

    # -- checks -------------------------------------------------------------------------------
    def step(self) -> None:
        """(a) on every new stop change at the broker; (b) where no external change excuses it."""
        self.store.advance()
        for deal_id, d in self.deals.items():
            self._check_moves(deal_id, d)
            if d.external:
                continue
            self._check_db(deal_id, d, trio.current_time(), "")

    def _check_moves(self, deal_id: str, d: _Deal) -> None:
        history, s, inst = d.pos.history, d.pos.direction.sign, d.pos.inst
        for i in range(max(1, d.checked), len(history)):
            change, before = history[i], history[i - 1].level
            d.external = d.external or change.source == "external"
            if change.source != "traild" or before is None:
                continue
            if change.level is None or s * (change.level - before) < 0:
                self.report(
                    "a",
                    change.t,
                    deal_id,
                    f"traild moved the broker stop from {_p(inst, before)} to "
                    f"{_p(inst, change.level)} (against the trade)",
                )
        d.checked = len(history)

    def _check_db(self, deal_id: str, d: _Deal, now: float, why: str) -> None:
        trade = self.store.trades.get(d.trade_id)
        if trade is None or trade.sl_price is None:
            return
        inst, s, stop = d.pos.inst, d.pos.direction.sign, d.pos.stop
        db = inst.to_ticks(trade.sl_price)
        if stop is None or s * (db - stop) > 0:
            self.report(
                "b",
                now,
                deal_id,
                f"database sl_price {trade.sl_price} but the broker's stop is "
                f"{_p(inst, stop)}{why}",
            )

    def calm_end(self, start: float, end: float) -> None:
        """A calm window [start, end] with the runtime up throughout: (b) after external
        changes, and (c), wherever the window was long enough to owe them."""
        self.step()
        for deal_id, d in self.deals.items():
            pos = d.pos
            if pos.closed_at is not None:
                continue
            externals = [c.t for c in pos.history if c.source == "external"]
            if externals and end - max(start, externals[-1]) >= self.w:
                self._check_db(
                    deal_id, d, end, f" {end - externals[-1]:.1f}s after an external change"
                )
            if d.reached_at is None:
                continue
            since = max(start, d.reached_at, d.unplaceable_at)
            if end - since < self.w:
                continue
            s, stop = pos.direction.sign, pos.stop
            if stop is None or s * (stop - d.lock) < 0:
                self.report(
                    "c",
                    end,
                    deal_id,
                    f"reached +{self._trigger / CENTI:g} pips at t={d.reached_at:.3f}s, then "
                    f"{end - since:.1f}s of calm with the lock placeable, yet the broker's stop is "
                    f"{_p(pos.inst, stop)} (lock {_p(pos.inst, d.lock)})",
                )

    def stats(self) -> dict[str, int]:
        reached = [d for d in self.deals.values() if d.reached_at is not None]
        locked = [
            d
            for d in reached
            if d.pos.stop is not None and d.pos.direction.sign * (d.pos.stop - d.lock) >= 0
        ]
        return {"reached_lock_trigger": len(reached), "lock_at_broker": len(locked)}


def _p(inst: Instrument, ticks: int | None) -> str:
    return "none" if ticks is None else f"{inst.to_price(ticks)}"


class SpinMeter(trio.abc.Instrument):
    """Counts scheduler steps per simulated instant and per simulated second (invariant d).

    The clock is read every ``EVERY`` steps only (reading a MockClock costs more than a step
    of bookkeeping), so the counts are exact to within ``EVERY``. On a spin it calls
    ``on_spin`` once. Under an autojump MockClock a task that never blocks also stops
    simulated time (the run would never end), whereas a real spinning daemon burns CPU while
    time goes on: so once a spin is flagged, every ``EVERY`` steps on one instant move the
    clock on by ``spin_jump`` seconds, and the seed plays on to its end."""

    EVERY = 64

    def __init__(
        self,
        clock: trio.testing.MockClock,
        on_spin: Callable[[float, int, str], None],
        per_instant: int = 1_000,
        per_second: int = 10_000,
        spin_jump: float = 0.25,
    ) -> None:
        self.clock, self.on_spin = clock, on_spin
        self.per_instant, self.per_second = per_instant, per_second
        self.steps = 0
        self.max_instant = self.max_second = 0
        self._t = -1.0
        self._t_base = 0
        self._sec = -1
        self._sec_base = 0
        self.spin_jump = spin_jump
        self.tripped = False

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1
        if self.steps % self.EVERY:
            return
        t = self.clock.current_time()
        if t != self._t:
            self._t, self._t_base = t, self.steps
        sec = int(t)
        if sec != self._sec:
            self._sec, self._sec_base = sec, self.steps
        at_instant, in_second = self.steps - self._t_base, self.steps - self._sec_base
        self.max_instant = max(self.max_instant, at_instant)
        self.max_second = max(self.max_second, in_second)
        if self.tripped:
            if at_instant > 0:
                self.clock.jump(self.spin_jump)
        elif at_instant > self.per_instant or in_second > self.per_second:
            self.tripped = True
            self.on_spin(t, max(at_instant, in_second), task.name)
