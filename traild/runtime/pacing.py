"""Pacing amendments to the broker's allowance: one limiter per amendment.

The gateway waits on a ``Pacer`` before each amendment (then checks the halt and the lease,
then sends) and pauses it when the broker answers ``RateLimited``. Which pacer: the broker's
own when it declares one (``PacedBroker``: IG paces with its trading-allowance window, the
limiter its session spends each PUT on, so a PUT is never paced twice; see
``traild.adapters.ig.allowance``), else a ``TokenBucket`` of the allowance per minute
(the paper broker, or IG while its allowance is unknown).
"""

from __future__ import annotations

import trio

from traild.ports import PacedBroker, Pacer


def pacer_for(broker: object, per_minute: int) -> Pacer:
    """The broker's own pacer if it declares one, else a token bucket of ``per_minute``."""
    own = broker.pacer() if isinstance(broker, PacedBroker) else None
    return own if own is not None else TokenBucket(per_minute)


class TokenBucket:
    """``rate`` requests per minute, bursting up to ``rate``; trio clock."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(max(1, per_minute))
        self.tokens = self.capacity
        self.per_second = self.capacity / 60.0
        self.stamp = trio.current_time()
        self.paused_until = 0.0

    def _refill(self) -> None:
        now = trio.current_time()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now

    async def acquire(self) -> None:
        while True:
            now = trio.current_time()
            if now < self.paused_until:
                await trio.sleep_until(self.paused_until)
                continue
            self._refill()
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await trio.sleep((1 - self.tokens) / self.per_second)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, trio.current_time() + seconds)

    def resized(self, per_minute: int) -> TokenBucket:
        """A bucket of ``per_minute`` keeping this one's fill and pause (a reload)."""
        bucket = TokenBucket(per_minute)
        bucket.tokens = min(bucket.capacity, self.tokens)
        bucket.paused_until = self.paused_until
        return bucket
