"""Real-time recalculation over one trade's ticks, for ``traild simulate`` and the backtest.

The daemon does the same with its per-epic bars (``runtime.recalc``): the tick is trailed
first, then fed to the bars; when it closed a bar the conditions are re-measured and, on a
volatility-regime shift of ``shift`` levels or more, the same calculator's new stages are
adopted by the ladder from the next tick (``Ladder.recalculated``: nothing earned is lost).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from traild.core.calculator import (
    CalculatedStages,
    DynamicTrailingCalculator,
    MarketConditions,
    RegimeTables,
    StageConfig,
)
from traild.core.conditions import BarHistory
from traild.core.instruments import Instrument
from traild.core.ladder import Ladder, LadderPlan
from traild.core.market import remeasured


@dataclass(frozen=True, slots=True)
class Recalculated:
    """One recalculation: when, from which stages to which, on which conditions."""

    ts: datetime
    old: CalculatedStages
    new: CalculatedStages
    conditions: MarketConditions


@dataclass(slots=True)
class RealtimeRecalc:
    """Drives the recalculation of one trade; ``stages`` is always the current result."""

    calculator: DynamicTrailingCalculator
    stages: CalculatedStages
    base: StageConfig
    history: BarHistory
    compile: Callable[[CalculatedStages], LadderPlan]
    epic: str
    is_scalp: bool = False
    shift: int = 2
    regimes: RegimeTables | None = None
    market_regime: str | None = None  # the entry's, used while the bars classify nothing
    events: list[Recalculated] = field(default_factory=list)

    def ticks(
        self, ladder: Ladder, source: Iterable[tuple[datetime, float, float]], inst: Instrument
    ) -> Iterator[tuple[datetime, int, int]]:
        """``source`` as integer ticks for ``run_trade(ladder, ...)``; each tick reaches the
        bars after the ladder has applied it, so new stages act from the next tick."""
        to_ticks = inst.to_ticks
        return self.quotes(
            ladder, ((ts, bid, ask, to_ticks(bid), to_ticks(ask)) for ts, bid, ask in source)
        )

    def quotes(
        self, ladder: Ladder, source: Iterable[tuple[datetime, float, float, int, int]]
    ) -> Iterator[tuple[datetime, int, int]]:
        """As ``ticks``, for a source that carries both prices and integer ticks."""
        for ts, bid, ask, bid_ticks, ask_ticks in source:
            yield ts, bid_ticks, ask_ticks
            if self.history.add(ts, bid, ask) and not ladder.closed:
                self.check(ladder, ts)

    def check(self, ladder: Ladder, ts: datetime) -> Recalculated | None:
        """A bar closed at ``ts``: recalculate when the regime shifted enough."""
        own = self.history.conditions(self.epic, ts)
        cond = remeasured(self.epic, own, self.market_regime)
        new = self.calculator.recalculate(
            self.stages, cond, self.base, self.is_scalp, self.shift, None, self.epic, self.regimes
        )
        if new is None:
            return None
        event = Recalculated(ts, self.stages, new, cond)
        self.events.append(event)
        self.stages = new
        ladder.recalculated(self.compile(new))
        return event
