"""IG's request allowances as a client-side sliding window (see ``Allowance``)."""

from __future__ import annotations

import math

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
        self.waited = 0
        self._answered = trio.Event()

    def configure(self, trading: int | None, account: int | None, app: int | None) -> None:
        self._limits = {"trading": trading, "account": account, "app": app}

    def limits(self) -> dict[str, int | None]:
        return dict(self._limits)

    def budget(self, kind: str) -> int | None:
        limit = self._limits[kind]
        return None if limit is None else max(1, limit - self._reserve)

    async def spend(self, trading: bool) -> list[list[float]]:
        """Wait for room, then count one request; pass the result to ``done`` afterwards.

        A request counts from the moment it is let through until a full window after its
        answer: IG counts it when it arrives, which is somewhere in between.
        """
        kinds = ("trading",) if trading else ("account", "app")
        while True:
            now = trio.current_time()
            wait = max(self._wait(kind, now) for kind in kinds)
            if wait <= 0:
                slots = [[math.inf] for _ in kinds]
                for kind, slot in zip(kinds, slots, strict=True):
                    self._sent[kind].append(slot)
                return slots
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
        budget = self.budget(kind)
        sent = self._sent[kind] = [s for s in self._sent[kind] if s[0] > now - self.window]
        if budget is None or len(sent) < budget:
            return 0.0
        times = sorted(s[0] for s in sent)
        return times[len(times) - budget] + self.window - now
