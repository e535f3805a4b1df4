"""The one authority per trade for the best stop level known, and the gateway's queue.

Per trade: the broker's stop (confirmed or observed), the amendment in flight and the queued
one. A target that does not beat all three is refused; a refusal of the one in flight never
makes the queued one forgotten; a queued target the confirmed level already beats is dropped
(a stop is never replaced by a looser one). Profit-lock and rung targets jump the queue; a
trade whose amendment failed waits out its back-off before it is sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from traild.core.messages import Reason

Better = Callable[[float, float], bool]  # better(a, b): a is a tighter stop than b


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
    better: Better
    log: dict[str, object] = field(default_factory=dict)
    # Catch-up after a restart of a replay: the level was confirmed before the restart, so it is
    # re-applied to the (restored, simulated) broker without a new audit record.
    replay: bool = False


class StopBook:
    """What is known per trade; ``queued`` and ``in_flight`` are the gateway's queue."""

    def __init__(self) -> None:
        self.queued: dict[int, AmendTarget] = {}
        self.in_flight: dict[int, AmendTarget] = {}
        self._priority: dict[int, None] = {}  # queued trades whose target has priority, in order
        # The broker's stop per trade as last known (confirmed by it, or read from it) and the
        # trade's "tighter than" (a BUY's stop is better higher, a SELL's lower).
        self._confirmed: dict[int, float | None] = {}
        self._better: dict[int, Better] = {}
        self._answers: dict[int, int] = {}  # amendments concluded per trade (see ``mark``)
        self._not_before: dict[int, float] = {}  # trio time a trade's back-off ends
        self._failures: dict[int, int] = {}

    # -- what the actors and the stop keeper ask --------------------------------------------
    def track(self, trade_id: int, stop: float | None, better: Better) -> None:
        """Know ``trade_id`` (its broker stop ``stop`` unless already known: a restarted actor
        does not undo what the gateway learned since)."""
        self._better[trade_id] = better
        self._confirmed.setdefault(trade_id, stop)

    def observe(self, trade_id: int, stop: float | None) -> None:
        """The broker's stop as read from the broker (reconciliation): the truth, looser or not.
        Ignored while an amendment is in flight (its answer will say)."""
        if trade_id in self._better and trade_id not in self.in_flight:
            self._confirmed[trade_id] = stop

    def busy(self, trade_id: int) -> bool:
        """An amendment of the trade is in flight (its outcome is not known yet)."""
        return trade_id in self.in_flight

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
        levels = [t.level for t in (self.queued.get(trade_id), self.in_flight.get(trade_id)) if t]
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

    # -- the gateway's bookkeeping -------------------------------------------------------------
    def admits(self, target: AmendTarget) -> bool:
        """``target`` beats every level known for its trade (which it makes known)."""
        self._better.setdefault(target.trade_id, target.better)
        self._confirmed.setdefault(target.trade_id, target.previous)
        best = self.best(target.trade_id)
        return best is None or target.better(target.level, best)

    def enqueue(self, target: AmendTarget) -> None:
        """Queue ``target``, replacing the trade's queued one."""
        self.queued[target.trade_id] = target
        if target.priority:
            self._priority[target.trade_id] = None
        else:
            self._priority.pop(target.trade_id, None)

    def requeue(self, t: AmendTarget) -> None:
        """``t`` again, unless a newer target replaced it, the broker already has a level as
        good, or the trade is gone."""
        if t.trade_id in self.queued or t.trade_id not in self._better:
            return
        confirmed = self._confirmed.get(t.trade_id)
        if confirmed is None or t.better(t.level, confirmed):
            self.enqueue(t)

    def send_next(self, now: float, market_open: Callable[[str], bool]) -> AmendTarget | None:
        """The first sendable priority target, else the first sendable one (queue order), moved
        in flight; the search stops at the first hit, so a burst costs no quadratic scan."""
        best = self._first_sendable(self._priority, now, market_open) or self._first_sendable(
            self.queued, now, market_open
        )
        if best is not None:
            del self.queued[best.trade_id]
            self._priority.pop(best.trade_id, None)
            self.in_flight[best.trade_id] = best
        return best

    def _first_sendable(
        self, trade_ids: dict[int, Any], now: float, market_open: Callable[[str], bool]
    ) -> AmendTarget | None:
        for trade_id in trade_ids:
            if trade_id in self.in_flight or self._not_before.get(trade_id, 0.0) > now:
                continue
            target = self.queued[trade_id]
            if not market_open(target.epic):
                # no amendments while the market is closed; looked at again shortly
                self._not_before[trade_id] = now + 5.0
                continue
            return target
        return None

    def earliest_retry(self) -> float | None:
        """When the earliest back-off of a queued trade not in flight ends."""
        pending = [
            t for k, t in self._not_before.items() if k in self.queued and k not in self.in_flight
        ]
        return min(pending) if pending else None

    def release(self, trade_id: int) -> None:
        """The trade's amendment is no longer in flight (answered, or not sent)."""
        self.in_flight.pop(trade_id, None)

    def concluded(self, trade_id: int) -> None:
        """A worker is done with the trade's amendment: one more answer (``mark``)."""
        self.in_flight.pop(trade_id, None)
        if trade_id in self._better:
            self._answers[trade_id] = self._answers.get(trade_id, 0) + 1

    def confirm(self, trade_id: int, level: float | None) -> None:
        """The broker has ``level`` (it said so, or a read of the position showed it)."""
        if trade_id in self._better:
            self._confirmed[trade_id] = level

    def drop_beaten(self, t: AmendTarget, level: float) -> None:
        """A queued target that does not beat ``level``, now confirmed, is dropped."""
        queued = self.queued.get(t.trade_id)
        if queued is not None and not t.better(queued.level, level):
            self.queued.pop(t.trade_id, None)
            self._priority.pop(t.trade_id, None)

    def failed(self, trade_id: int) -> int:
        """One more failure of the trade's amendments in a row; how many now."""
        n = self._failures[trade_id] = self._failures.get(trade_id, 0) + 1
        return n

    def hold(self, trade_id: int, until: float) -> None:
        """Not sent before ``until`` (trio time)."""
        self._not_before[trade_id] = until

    def succeeded(self, trade_id: int) -> None:
        """Confirmed: the trade's back-off is over."""
        self._failures.pop(trade_id, None)
        self._not_before.pop(trade_id, None)

    def clear_queue(self) -> int:
        """Everything queued dropped (draining); how many."""
        dropped = len(self.queued)
        self.queued.clear()
        self._priority.clear()
        return dropped

    def forget(self, trade_id: int) -> None:
        """The trade is gone: drop what is queued and known for it."""
        self.queued.pop(trade_id, None)
        self._priority.pop(trade_id, None)
        self._not_before.pop(trade_id, None)
        self._failures.pop(trade_id, None)
        self._confirmed.pop(trade_id, None)
        self._better.pop(trade_id, None)
        self._answers.pop(trade_id, None)


def _ranking(better: Better) -> Callable[[float], float]:
    """A sort key from a "tighter than" relation (a BUY's stop ranks by level, a SELL's by
    minus the level)."""
    return (lambda x: x) if better(1.0, 0.0) else (lambda x: -x)
