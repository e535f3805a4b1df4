"""IG's request allowances as a client-side sliding window (``Allowance``), and the pacer of
amendments built on its trading window (``TradingPacer``).

One limiter per amendment PUT: IG's trading window here is the authority. A token bucket (the
runtime's generic pacer) lets a full bucket through and refills it within the same minute, up
to twice the allowance in one window; IG counts requests per window, so only a window keeps
every PUT inside IG's limit. The runtime's gateway therefore paces IG amendments with
``IGBroker.pacer()`` (this window: it waits for room, then checks the halt and the lease, then
sends; the PUT spends the slot it waited for) instead of its own bucket, and a
``RateLimited`` answer pauses this window (``pause``), which every trading request then waits
out. While IG's trading allowance is unknown the window has no limit and ``pacer()`` is None:
the gateway's token bucket of ``broker.allowance_per_minute`` is then the one limiter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import trio


class Allowance:
    """A sliding-window budget of requests per minute (IG's allowances are per minute).

    ``spend`` waits until the request fits every window it belongs to: a trading request
    (amendments) the account's trading allowance, every other request the account's and the
    application's non-trading allowances. ``reserve`` requests per window are left for
    session refreshes and the other stream's login (trading-ig keeps 2).
    """

    def __init__(self, window: float = 60.0, reserve: int = 2) -> None:
        self.window = window
        self._reserve = reserve
        self._limits: dict[str, int | None] = {"trading": None, "account": None, "app": None}
        self._sent: dict[str, list[list[float]]] = {kind: [] for kind in self._limits}
        self._paused_until = dict.fromkeys(self._limits, -math.inf)
        self.waited = 0
        self._answered = trio.Event()

    def configure(self, trading: int | None, account: int | None, app: int | None) -> None:
        self._limits = {"trading": trading, "account": account, "app": app}

    def limits(self) -> dict[str, int | None]:
        return dict(self._limits)

    def budget(self, kind: str) -> int | None:
        limit = self._limits[kind]
        return None if limit is None else max(1, limit - self._reserve)

    def pause(self, kind: str, seconds: float) -> None:
        """Let no request of ``kind`` through for ``seconds`` (IG said the allowance is spent)."""
        until = trio.current_time() + seconds
        self._paused_until[kind] = max(self._paused_until[kind], until)

    async def spend(self, trading: bool) -> list[list[float]]:
        """Wait for room, then count one request; pass the result to ``done`` afterwards.

        A request counts from the moment it is let through until a full window after its
        answer: IG counts it when it arrives, which is somewhere in between.
        """
        kinds = ("trading",) if trading else ("account", "app")
        await self.room(kinds)  # returns without a checkpoint once there is room
        slots = [[math.inf] for _ in kinds]
        for kind, slot in zip(kinds, slots, strict=True):
            self._sent[kind].append(slot)
        return slots

    async def room(self, kinds: Sequence[str]) -> None:
        """Wait until one more request of every kind in ``kinds`` fits (nothing is counted)."""
        while True:
            now = trio.current_time()
            wait = max(self._wait(kind, now) for kind in kinds)
            if wait <= 0:
                return
            self.waited += 1
            if math.isfinite(wait):
                await trio.sleep(wait)
            else:  # every slot is held by a request still in flight: wait for an answer
                await self._answered.wait()

    def done(self, slots: list[list[float]]) -> None:
        now = trio.current_time()
        for slot in slots:
            slot[0] = now
        self._answered.set()
        self._answered = trio.Event()

    def _wait(self, kind: str, now: float) -> float:
        paused = self._paused_until[kind] - now
        budget = self.budget(kind)
        sent = self._sent[kind] = [s for s in self._sent[kind] if s[0] > now - self.window]
        if budget is None or len(sent) < budget:
            return paused
        times = sorted(s[0] for s in sent)
        return max(paused, times[len(times) - budget] + self.window - now)


class TradingPacer:
    """The gateway's pacer of IG amendments: the trading window of ``allowance`` (see the
    module docstring). ``acquire`` waits for room without counting (the PUT counts itself);
    ``pause`` holds every trading request back."""

    def __init__(self, allowance: Allowance) -> None:
        self._allowance = allowance

    async def acquire(self) -> None:
        await self._allowance.room(("trading",))

    def pause(self, seconds: float) -> None:
        self._allowance.pause("trading", seconds)
