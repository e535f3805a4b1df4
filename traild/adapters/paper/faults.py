"""The paper broker's misbehaviour on purpose: latency, a per-minute allowance, rate-limit
bursts and seeded faults (5xx errors, timeouts applied or not, rejections) of ``amend_stop``.

Random draws come from one ``random.Random(seed)`` in a fixed order (one for a burst, then
four per call after the latency), so one rate never reshuffles another and a reload continues
the sequence.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from enum import Enum

import trio

from traild.core.errors import RateLimited

WINDOW_S = 60.0  # the allowance is per minute


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probabilities per ``amend_stop`` call; ``timeout_applied`` of the timeouts happen after
    the amendment was applied."""

    error: float = 0.0
    timeout: float = 0.0
    timeout_applied: float = 0.5
    reject: float = 0.0
    burst: float = 0.0

    def __post_init__(self) -> None:
        for name, rate in (
            ("reject_rate", self.reject),
            ("timeout_rate", self.timeout),
            ("timeout_applied_share", self.timeout_applied),
            ("error_rate", self.error),
            ("burst_rate", self.burst),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {rate}")


class Fault(Enum):
    """What a call to ``amend_stop`` runs into (``Faults.draw``)."""

    NONE = "none"
    UNAVAILABLE = "unavailable"  # a 5xx answer
    TIMEOUT = "timeout"  # no answer; the amendment was not applied
    TIMEOUT_APPLIED = "timeout_applied"  # no answer; the amendment was applied
    REJECT = "reject"


class Faults:
    """Latency, allowance, bursts and fault draws; ``counts`` are the broker's statistics."""

    def __init__(
        self,
        counts: dict[str, int],
        rates: FaultRates,
        *,
        latency_ms: float,
        allowance_per_minute: int | None,
        burst_length: int,
        seed: int,
    ) -> None:
        self._n = counts
        self._rng = random.Random(seed)
        self._burst_length = burst_length
        self._burst_left = 0
        self._window: deque[float] = deque()  # request times, oldest first
        self.rates = rates
        self.latency = 0.0
        self.allowance: int | None = None
        self.configure(rates, latency_ms, allowance_per_minute)

    def configure(
        self, rates: FaultRates, latency_ms: float, allowance_per_minute: int | None
    ) -> None:
        """New rates, latency and allowance from the next call (the draws continue)."""
        self.rates = rates
        self.latency = latency_ms / 1000.0
        self.allowance = allowance_per_minute

    def admit(self) -> None:
        """Rate limits before anything else, as a broker's gateway answers 429 at once."""
        starts_burst = self._rng.random() < self.rates.burst
        if self._burst_left == 0 and starts_burst:
            self._burst_left = self._burst_length
        if self._burst_left > 0:
            self._burst_left -= 1
            self._n["rate_limited"] += 1
            raise RateLimited("paper broker: simulated rate-limit burst", retry_after=1.0)
        if self.allowance is None:
            return
        now = trio.current_time()
        window = self._window
        while window and window[0] <= now - WINDOW_S:  # times only grow: drop from the left
            window.popleft()
        if len(window) >= self.allowance:
            self._n["rate_limited"] += 1
            raise RateLimited(
                f"paper broker: allowance of {self.allowance} requests per minute exceeded",
                retry_after=window[0] + WINDOW_S - now,
            )
        window.append(now)

    async def wait(self) -> None:
        """The broker's latency (a checkpoint when there is none)."""
        if self.latency > 0:
            await trio.sleep(self.latency)
        else:
            await trio.lowlevel.checkpoint()

    def draw(self) -> Fault:
        """The fault this call runs into (four draws, always)."""
        rates = self.rates
        draws = [self._rng.random() for _ in range(4)]
        if draws[0] < rates.error:
            self._n["unavailable"] += 1
            return Fault.UNAVAILABLE
        if draws[1] < rates.timeout:
            self._n["timeouts"] += 1
            if draws[2] < rates.timeout_applied:
                self._n["timeouts_applied"] += 1
                return Fault.TIMEOUT_APPLIED
            return Fault.TIMEOUT
        if draws[3] < rates.reject:
            return Fault.REJECT
        return Fault.NONE
