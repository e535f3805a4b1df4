"""Pacing amendments to the broker's allowance: a token bucket on trio's clock."""

from __future__ import annotations

import trio


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
