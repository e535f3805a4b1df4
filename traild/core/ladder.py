"""The trailing ladder: one trade, one tick -> exit, stop move, or nothing. Never loosens.

Everything runs in *directional integer ticks*: ``x = sign * price_ticks`` with sign +1 for a
BUY and -1 for a SELL, so one code path serves both directions ("at least" is always ``max``)
and rounding "towards the market" is always rounding up. Thresholds are compared exactly:
``mfe_ticks * 100 >= trigger_centipips * ticks_per_pip``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from traild.core.calculator import StageConfig
from traild.core.instruments import CENTI, Instrument, to_centipips
from traild.core.messages import Direction, MoveStop, Reason

_NONE = -(1 << 62)  # "no stop" in directional ticks: below every price


@dataclass(frozen=True, slots=True)
class LadderPolicy:
    """Account-wide ladder settings (pips)."""

    profit_lock: bool = True
    profit_lock_trigger_pips: float = 10.0
    profit_lock_pips: float = 1.0
    min_amend_step_pips: float = 0.5
    min_stop_distance_pips: float = 0.0


@dataclass(frozen=True, slots=True)
class LadderPlan:
    """A StageConfig compiled to integers for one instrument (direction-free).

    ``rungs`` are ``(trigger_scaled, offset_ticks, reason)`` sorted by trigger, where
    ``trigger_scaled = centipips * ticks_per_pip`` and the offset is rounded towards the market.
    """

    rungs: tuple[tuple[int, int, Reason], ...]
    s3_trigger: int
    s3_distance: int
    min_step: int
    min_distance: int

    @classmethod
    def compile(
        cls,
        stages: StageConfig,
        instrument: Instrument,
        policy: LadderPolicy,
        atr_pips: float | None = None,
    ) -> LadderPlan:
        tpp = instrument.ticks_per_pip
        up = instrument.centipips_to_ticks_ceil
        rungs = [
            (
                to_centipips(stages.early_be_trigger) * tpp,
                up(to_centipips(stages.early_be_buffer)),
                Reason.EARLY_BE,
            ),
            (
                to_centipips(stages.stage1_trigger) * tpp,
                up(to_centipips(stages.stage1_lock)),
                Reason.STAGE1,
            ),
            (
                to_centipips(stages.stage2_trigger) * tpp,
                up(to_centipips(stages.stage2_lock)),
                Reason.STAGE2,
            ),
        ]
        if policy.profit_lock:
            rungs.append(
                (
                    to_centipips(policy.profit_lock_trigger_pips) * tpp,
                    up(to_centipips(policy.profit_lock_pips)),
                    Reason.PROFIT_LOCK,
                )
            )
        distance = stages.stage3_min_distance
        if atr_pips is not None and atr_pips > 0:
            distance = max(distance, stages.stage3_atr_multiplier * atr_pips)
        distance_cp = max(to_centipips(distance), 1)
        # Trail level = best - D, rounded up (towards the market) = best - floor(D in ticks).
        s3_distance = max(instrument.centipips_to_ticks_floor(distance_cp), 1)
        return cls(
            rungs=tuple(sorted(rungs, key=lambda r: (r[0], r[1]))),
            s3_trigger=to_centipips(stages.stage3_trigger) * tpp,
            s3_distance=s3_distance,
            min_step=to_centipips(policy.min_amend_step_pips) * tpp,
            # At least one tick: a stop is never placed at or through the exit price.
            min_distance=max(up(to_centipips(policy.min_stop_distance_pips)), 1),
        )

    def floor(self, mfe: int) -> tuple[int, Reason | None]:
        """The desired stop offset from entry (ticks) for an MFE in ticks, and its rung."""
        scaled = mfe * CENTI
        best, reason = _NONE, None
        for trigger, offset, rung in self.rungs:
            if scaled < trigger:
                break
            if offset >= best:
                best, reason = offset, rung
        if scaled >= self.s3_trigger and mfe - self.s3_distance > best:
            best, reason = mfe - self.s3_distance, Reason.STAGE3
        return best, reason

    def crosses_rung(self, mfe: int, low: int, high: int) -> bool:
        """True when a rung reached at ``mfe`` has its offset in ``(low, high]``: moving the
        stop from ``low`` to ``high`` (offsets from entry) puts a new rung in place. A trail
        level carried over a replan (reason stage 3) is no rung: it keeps the minimum step."""
        scaled = mfe * CENTI
        for trigger, offset, rung in self.rungs:
            if scaled < trigger:
                break
            if low < offset <= high and rung is not Reason.STAGE3:
                return True
        return False

    def with_floor(self, mfe: int, offset: int, reason: Reason) -> LadderPlan:
        """This plan plus a floor already earned at ``mfe`` ticks: a rung whose trigger is that
        MFE (so it stays reached, the MFE never falls) and whose offset is the earned level."""
        rungs = (*self.rungs, (mfe * CENTI, offset, reason))
        return replace(self, rungs=tuple(sorted(rungs, key=lambda r: (r[0], r[1]))))


@dataclass(frozen=True, slots=True)
class Exit:
    """The trade closed on this tick at ``price`` ticks (``gap``: filled beyond the level)."""

    price: int
    reason: str  # "stop" | "limit"
    gap: bool
    level: int  # the stop or limit level that triggered


class Ladder:
    """Mutable per-trade trailing state: best price, confirmed stop, pending amendment.

    ``on_tick`` is the hot path: most ticks cost one exit comparison and one best-price
    comparison. Call ``confirm``/``reject`` when the broker answers a MoveStop.
    """

    __slots__ = (
        "_best",
        "_dirty",
        "_entry",
        "_limit",
        "_pending",
        "_stop",
        "closed",
        "moves",
        "plan",
        "sign",
    )

    def __init__(
        self,
        plan: LadderPlan,
        direction: Direction,
        entry: int,
        stop: int | None = None,
        limit: int | None = None,
        best: int | None = None,
    ) -> None:
        self.plan = plan
        self.sign = direction.sign
        s = self.sign
        self._entry = s * entry
        self._stop = _NONE if stop is None else s * stop
        self._limit = None if limit is None else s * limit
        self._best = _NONE if best is None else s * best
        self._pending = _NONE
        self._dirty = best is not None  # a restored best may owe a floor
        self.closed = False
        self.moves = 0  # how often the best price improved (cheap change detection)

    # -- views (real ticks) ----------------------------------------------------------------
    @property
    def stop(self) -> int | None:
        return None if self._stop == _NONE else self.sign * self._stop

    @property
    def pending(self) -> int | None:
        return None if self._pending == _NONE else self.sign * self._pending

    @property
    def best(self) -> int | None:
        return None if self._best == _NONE else self.sign * self._best

    @property
    def limit(self) -> int | None:
        return None if self._limit is None else self.sign * self._limit

    @property
    def mfe(self) -> int | None:
        """Favourable excursion in ticks (None before the first tick)."""
        return None if self._best == _NONE else self._best - self._entry

    def quiet_band(self) -> tuple[float, float] | None:
        """``(lo, hi)``: a tick whose unrounded directional price (bid, or minus the ask of a
        SELL, in ticks) lies strictly inside changes nothing here — no exit, no new best,
        nothing owed — so a dispatcher may skip this ladder. None: it must see the next tick.
        The half-tick margins make that exact for prices rounded to the nearest tick."""
        if self.closed:
            return -math.inf, math.inf
        if self._dirty or self._best == _NONE:
            return None
        hi = self._best + 0.5
        if self._limit is not None:
            hi = min(hi, self._limit - 0.5)
        return self._stop + 0.5, hi

    # -- events ------------------------------------------------------------------------------
    def on_tick(self, bid: int, ask: int) -> MoveStop | Exit | None:
        """Apply one tick (integer ticks). Exit check first, then MFE, then the ladder."""
        if self.closed:
            return None
        x = bid if self.sign > 0 else -ask
        if x <= self._stop:
            self.closed = True
            return Exit(self.sign * x, "stop", x < self._stop, self.sign * self._stop)
        if self._limit is not None and x >= self._limit:
            self.closed = True
            if x > self._best:  # the exit tick counts towards the excursion (SPEC §1)
                self._best = x
            return Exit(self.sign * x, "limit", x > self._limit, self.sign * self._limit)
        if x > self._best:
            self._best = x
            self._dirty = True
            self.moves += 1
        elif not self._dirty:
            return None
        return self._decide(x)

    def _decide(self, x: int) -> MoveStop | None:
        plan = self.plan
        offset, reason = plan.floor(self._best - self._entry)
        current = self._stop if self._stop > self._pending else self._pending
        if reason is None or self._entry + offset <= current:
            self._dirty = False  # nothing owed until the best price moves again
            return None
        target = self._entry + offset
        cap = x - plan.min_distance
        capped = target > cap
        if capped:
            target = cap
            if target <= current:
                return None  # the floor stays owed; retried on later ticks
        # A move that puts a new rung in place (profit lock, early BE, stage 1/2) is always
        # sent, whatever determined its level (a stage-3 jump past the rungs, a capped floor);
        # any other move must improve the stop by the minimum step.
        new_rung = current == _NONE or plan.crosses_rung(
            self._best - self._entry, current - self._entry, target - self._entry
        )
        if not new_rung and (target - current) * CENTI < plan.min_step:
            if not capped:
                self._dirty = False
            return None
        self._pending = target
        self._dirty = capped
        return MoveStop(self.sign * target, reason, new_rung or reason is not Reason.STAGE3)

    def confirm(self, level: int) -> None:
        """The broker confirmed ``level`` (ticks) as the stop; it never loosens the stop."""
        x = self.sign * level
        if x > self._stop:
            self._stop = x
        if self._pending <= self._stop:
            self._pending = _NONE
        self._dirty = True

    def reject(self, held: int | None = None) -> None:
        """The pending amendment failed: forget it so the floor is retried on later ticks.
        ``held``: a level still on its way to the broker (queued behind the failed one) stays
        pending, so no later tick asks for anything looser than it."""
        self._pending = _NONE if held is None else self.sign * held
        self._dirty = True

    def hold(self, level: int | None) -> None:
        """The level the gateway holds for this trade (what is on its way to the broker), when
        it refused a move because that level is at least as good."""
        x = _NONE if level is None else self.sign * level
        self._pending = x if x > self._stop else _NONE

    def reset_stop(self, level: int | None) -> None:
        """The broker's stop is looser than the confirmed one, or gone (moved at the broker,
        not by traild): trail from what the broker really has, so the floors owed are sent
        again (as close to the market as allowed when the confirmed level no longer is); the
        trade is open for as long as the broker holds it."""
        self._stop = _NONE if level is None else self.sign * level
        self._pending = _NONE
        self.closed = False
        self._dirty = True

    def observe(self, bid: int, ask: int) -> None:
        """A quote that only counts towards the best price (the extremes of ticks a busy
        dispatcher skipped): no exit check and no decision, which the latest tick makes,
        capped against the latest market, never against a price already gone."""
        if self.closed:
            return
        x = bid if self.sign > 0 else -ask
        if x > self._best:
            self._best = x
            self._dirty = True
            self.moves += 1

    def touch(self) -> None:
        """Re-evaluate the floors on the next tick (after a plan change)."""
        self._dirty = True

    def recalculated(self, plan: LadderPlan) -> None:
        """Trail on ``plan`` from the next tick without un-reaching anything (real-time
        recalculation): the floor the current plan has earned at the current MFE (a rung or
        the stage-3 trail level) is carried into ``plan`` as an already reached rung, and a
        trade already trailing in stage 3 keeps trailing, at ``plan``'s distance. The
        confirmed stop is untouched, so it never loosens."""
        mfe = self.mfe
        if mfe is not None:
            offset, reason = self.plan.floor(mfe)
            if reason is not None:
                plan = plan.with_floor(mfe, offset, reason)
            if mfe * CENTI >= self.plan.s3_trigger:
                plan = replace(plan, s3_trigger=min(plan.s3_trigger, mfe * CENTI))
        self.plan = plan
        self._dirty = True

    def set_limit(self, limit: int | None) -> None:
        self._limit = None if limit is None else self.sign * limit
