"""The fake broker's book and models (``fake_broker``): its latency and fault mix, and the
positions it holds, in integer ticks, each with the history of its stop. All randomness comes
from the ``random.Random`` the caller passes in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from traild.core.instruments import Instrument
from traild.core.messages import Direction, Position

Source = Literal["traild", "external", "initial"]
T0 = datetime(2024, 1, 2, 8, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """A mix of a fixed latency, an exponential one and a long tail (seconds)."""

    fixed: float = 0.1
    mean: float = 0.25
    p_fixed: float = 0.4
    p_tail: float = 0.05
    max_latency: float = 3.0

    def draw(self, rng: random.Random) -> float:
        r = rng.random()
        if r < self.p_fixed:
            value = self.fixed * rng.uniform(0.9, 1.1)
        elif r < self.p_fixed + self.p_tail:
            value = rng.uniform(0.5, 1.0) * self.max_latency
        else:
            value = rng.expovariate(1.0 / self.mean)
        return min(self.max_latency, max(0.001, value))


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Per-request fault probabilities, applied only while the broker's ``faults_on``."""

    refuse: float = 0.0
    timeout: float = 0.0
    timeout_applied: float = 0.5  # share of timeouts whose amendment landed anyway
    unavailable: float = 0.0
    rate_limit_burst: float = 0.0  # chance that a request starts a burst of 429s
    burst_length: int = 3
    read_failure: float = 0.0  # get_position / open_positions raise BrokerUnavailable


@dataclass(frozen=True, slots=True)
class StopChange:
    """One change of a position's stop at the broker (level None: no stop)."""

    t: float
    level: int | None  # ticks
    source: Source


@dataclass(slots=True)
class SimPosition:
    """A position as the broker holds it (levels in integer ticks)."""

    deal_id: str
    epic: str
    inst: Instrument
    direction: Direction
    size: float
    entry: int
    stop: int | None
    limit: int | None
    opened_at: datetime
    closed_at: float | None = None  # trio time
    exit_price: int | None = None
    exit_reason: str | None = None
    history: list[StopChange] = field(default_factory=list)

    def position(self) -> Position:
        p = self.inst.to_price
        return Position(
            self.deal_id,
            self.epic,
            self.direction,
            self.size,
            p(self.entry),
            None if self.stop is None else p(self.stop),
            None if self.limit is None else p(self.limit),
            self.opened_at,
        )
