"""One actor per open trade: ticks in, core decision, amendment targets out.

The actor is a thin shell around ``core.ladder.Ladder``; its whole state is the ladder's
(best price, confirmed stop, pending amendment), persisted so a restart resumes exactly. Ticks
arrive by a plain synchronous call from its epic's dispatcher (see ``router``), so nothing
happens between a decision and its submission to the gateway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from traild.core.calculator import CalculatedStages
from traild.core.entry import EntryGate
from traild.core.instruments import Instrument
from traild.core.ladder import Ladder, LadderPlan, LadderPolicy
from traild.core.messages import Direction, MoveStop, Reason, Tick, TradeRecord
from traild.runtime.gateway import AmendTarget, Gateway
from traild.runtime.records import trade_log


class QuoteCache:
    """A tick in integer ticks, converted once for all the actors of an epic."""

    __slots__ = ("_ask", "_bid", "_tick", "inst")

    def __init__(self, instrument: Instrument) -> None:
        self.inst = instrument
        self._tick: Tick | None = None
        self._bid = self._ask = 0

    def ticks(self, tick: Tick) -> tuple[int, int]:
        if tick is not self._tick:
            self._tick = tick
            self._bid = self.inst.to_ticks(tick.bid)
            self._ask = self.inst.to_ticks(tick.ask)
        return self._bid, self._ask


@dataclass(frozen=True, slots=True)
class ActorPlan:
    """What the actor trails with: stages (dynamic or fixed) and the account policy."""

    stages: CalculatedStages
    policy: LadderPolicy


class TradeActor:
    """Trails one trade; ``on_progress(actor)`` is called when its best price moved since it
    was last taken for saving (the supervisor batches and paces the writes)."""

    def __init__(
        self,
        trade: TradeRecord,
        instrument: Instrument,
        plan: ActorPlan,
        gateway: Gateway,
        on_progress: Callable[[TradeActor], None] | None = None,
        confirmed_floor: float | None = None,
        quotes: QuoteCache | None = None,
    ) -> None:
        assert trade.id is not None and trade.entry_price is not None
        self.trade = trade
        self.trade_id = trade.id
        self.inst = instrument
        self.plan = plan
        self.gateway = gateway
        self.on_progress = on_progress
        # Replay catch-up: levels up to this one were confirmed before a restart.
        self.confirmed_floor = confirmed_floor
        self.direction = trade.direction
        self.quotes = quotes or QuoteCache(instrument)
        self.gate = EntryGate(trade.opened_at)
        to = instrument.to_ticks
        self.ladder = Ladder(
            self._compile(plan),
            trade.direction,
            to(trade.entry_price),
            None if trade.sl_price is None else to(trade.sl_price),
            None if trade.limit_price is None else to(trade.limit_price),
            None if trade.best_price is None else to(trade.best_price),
        )
        self.log = trade_log(trade.id, trade.deal_id, trade.epic)
        self.ticks = 0
        self._new_plan: ActorPlan | None = None
        self._carry_floor = False
        self._saved_best: int | None = self.ladder.best
        self._progress_flagged = False
        self._saved_moves = 0
        self.last_ts: datetime | None = None
        self.successor: TradeActor | None = None  # set when the supervisor restarts this actor
        # Set by the router: call when the state changed outside a tick (the quiet band it
        # holds for this actor is no longer valid).
        self.wake: Callable[[], None] | None = None
        self._tick_size = float(instrument.tick_size)
        self.before_open = 0  # ticks dropped because they are older than the trade's open
        # The gateway is the authority for the best level known; it learns the trade's stop.
        gateway.track(self.trade_id, trade.sl_price, self._better)

    def _compile(self, plan: ActorPlan) -> LadderPlan:
        return LadderPlan.compile(plan.stages.stages, self.inst, plan.policy, plan.stages.atr_pips)

    # -- control (called by the supervisor, applied before the next tick) ---------------------
    def replan(self, plan: ActorPlan) -> None:
        self._new_plan = plan
        self._carry_floor = False
        self._woken()

    def _woken(self) -> None:
        if self.wake is not None:
            self.wake()

    def quiet_band(self) -> tuple[bool, float, float] | None:
        """``(on_ask, lo, hi)``: a tick whose bid (ask when ``on_ask``) lies strictly inside
        ``(lo, hi)`` changes nothing for this actor, so the router may skip it (its tick count
        and time then stay those of its last eventful tick). None: it must see the next tick.
        A millionth of a tick of margin keeps the float bounds on the safe side."""
        if self._new_plan is not None:
            return None
        band = self.ladder.quiet_band()
        if band is None:
            return None
        lo, hi = band
        size, margin = self._tick_size, 1e-6
        if self.direction is Direction.BUY:
            return False, (lo + margin) * size, (hi - margin) * size
        return True, (-hi + margin) * size, (-lo - margin) * size

    def recalculate(self, plan: ActorPlan) -> None:
        """Real-time recalculation: ``plan`` from the next tick, keeping every floor the
        current stages have earned (``Ladder.recalculated``)."""
        self._new_plan = plan
        self._carry_floor = True
        self._woken()

    @property
    def current_plan(self) -> ActorPlan:
        """The plan the next tick will trail on (a pending replan included)."""
        return self._new_plan or self.plan

    def _apply_replan(self) -> None:
        plan, self._new_plan = self._new_plan, None
        assert plan is not None
        self.plan = plan
        if self._carry_floor:
            self.ladder.recalculated(self._compile(plan))
        else:
            self.ladder.plan = self._compile(plan)
            self.ladder.touch()

    # -- ticks --------------------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> None:
        """Apply one tick (synchronous: no await between decision and submission)."""
        if not self.gate.admits(tick.ts):
            self._before_open(tick)  # a replay restarted from the beginning, or a bad clock
            return
        if self._new_plan is not None:
            self._apply_replan()
        self.ticks += 1
        self.last_ts = tick.ts
        bid, ask = self.quotes.ticks(tick)
        event = self.ladder.on_tick(bid, ask)
        # An Exit needs nothing here: the broker reports the close, and the closed ladder
        # makes no more decisions until then.
        if isinstance(event, MoveStop):
            if self.trade.trailing_override == "off":
                self.ladder.reject()  # per-trade kill switch: track, never amend
            else:
                self._submit(event)
        if (
            self.ladder.moves != self._saved_moves
            and not self._progress_flagged
            and self.on_progress is not None
        ):
            self._progress_flagged = True
            self.on_progress(self)

    def on_extremes(self, tick: Tick) -> None:
        """The best bid and ask of ticks the dispatcher skipped: the best price only (the
        latest tick, which follows, decides and caps against the market)."""
        if self.gate.admits(tick.ts):
            bid, ask = self.quotes.ticks(tick)
            self.ladder.observe(bid, ask)

    def _before_open(self, tick: Tick) -> None:
        self.before_open += 1
        if self.before_open == 1:
            level = "DEBUG" if self.gate.restored else "WARNING"  # a restarted replay: expected
            self.log.bind(
                event="tick.before_open", ts=str(tick.ts), opened_at=str(self.trade.opened_at)
            ).log(level, "ticks older than the trade's open are not trailed (counted)")

    def _submit(self, move: MoveStop) -> None:
        level = self.inst.to_price(move.level)
        if not self._send(level, move.reason, move.priority):
            self._sync()

    def _sync(self) -> None:
        """The gateway refused a move: it holds a level at least as good (queued, in flight),
        or the broker has one; the ladder takes that as its pending or confirmed stop."""
        held = self.gateway.held(self.trade_id)
        self.ladder.hold(None if held is None else self.inst.to_ticks(held))
        confirmed = self.gateway.confirmed(self.trade_id)
        if held is None and confirmed is not None:
            self.ladder.confirm(self.inst.to_ticks(confirmed))

    def restore(self, broker_stop: float | None) -> bool:
        """The broker's stop (``broker_stop``) is looser than the confirmed one, or gone: the
        ladder trails from the broker's stop, and the confirmed one is sent again (priority);
        if the broker refuses it (the market went past it), the ladder's next decision sends
        the best level the market allows. False when nothing was sent (per-trade switch
        ``off``: the broker's stop is left as it is)."""
        stop = self.ladder.stop
        if stop is None or self.trade.trailing_override == "off":
            return False
        self.ladder.reset_stop(None if broker_stop is None else self.inst.to_ticks(broker_stop))
        self.trade = replace(self.trade, sl_price=broker_stop)
        self._woken()
        return self._send(self.inst.to_price(stop), Reason.RESTORE, True)

    def _send(self, level: float, reason: Reason, priority: bool) -> bool:
        stop = self.ladder.stop
        sent = self.gateway.submit(
            AmendTarget(
                trade_id=self.trade_id,
                deal_id=self.trade.deal_id,
                epic=self.trade.epic,
                level=level,
                previous=None if stop is None else self.inst.to_price(stop),
                limit=self.trade.limit_price,
                reason=reason,
                priority=priority,
                on_confirmed=self.on_confirmed,
                on_failed=self.on_failed,
                better=self._better,
                log={"method": self.plan.stages.method},
                replay=self.confirmed_floor is not None
                and not self._better(level, self.confirmed_floor),
            )
        )
        if sent:
            self.ladder.hold(self.inst.to_ticks(level))
        return sent

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.direction is Direction.BUY else a < b

    def on_confirmed(self, level: float) -> None:
        self.ladder.confirm(self.inst.to_ticks(level))
        known = self.trade.sl_price
        if known is None or self._better(level, known):  # never looser than what it had
            self.trade = replace(self.trade, sl_price=level)
        self._woken()
        if self.successor is not None:
            self.successor.on_confirmed(level)

    def on_failed(self, reason: str) -> None:
        held = self.gateway.held(self.trade_id)  # queued behind the failed one: still wanted
        self.ladder.reject(None if held is None else self.inst.to_ticks(held))
        self._woken()
        if self.successor is not None:
            self.successor.on_failed(reason)

    # -- progress -----------------------------------------------------------------------------
    def take_progress(self) -> float | None:
        """The best price to save now (None when nothing changed); marks it saved."""
        self._progress_flagged = False
        best = self.ladder.best
        if best is None or best == self._saved_best:
            return None
        self._saved_best = best
        self._saved_moves = self.ladder.moves
        return self.inst.to_price(best)

    @property
    def confirmed_stop(self) -> float | None:
        """The stop the broker confirmed (as far as this actor knows)."""
        stop = self.ladder.stop
        return None if stop is None else self.inst.to_price(stop)

    def set_limit(self, limit: float | None) -> None:
        """The broker reports the position's limit: re-sent with later amendments, and the
        ladder's exit check follows it."""
        if limit != self.trade.limit_price:
            self.trade = replace(self.trade, limit_price=limit)
            self.ladder.set_limit(None if limit is None else self.inst.to_ticks(limit))
            self._woken()

    @property
    def best_price(self) -> float | None:
        best = self.ladder.best
        return None if best is None else self.inst.to_price(best)
