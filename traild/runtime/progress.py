"""Best prices, written in the background: an actor flags that its best price moved, and the
prices that moved are written together, at most every ``persist_every_s``."""

from __future__ import annotations

from collections.abc import Callable

import trio

from traild.ports import TradeStore
from traild.runtime.records import durable
from traild.runtime.slots import Slots
from traild.runtime.stages import Policy
from traild.runtime.trade_actor import TradeActor


class Progress:
    """The actors whose best price is due to be written, and the loop that writes them."""

    def __init__(self, store: TradeStore, slots: Slots, policy: Callable[[], Policy]) -> None:
        self.store = store
        self.slots = slots
        self.policy = policy
        self._dirty: dict[int, TradeActor] = {}
        self._dirty_event = trio.Event()

    def due(self, actor: TradeActor) -> None:
        """The actor's callback: its best price moved."""
        self._dirty[actor.trade_id] = actor
        self._dirty_event.set()

    def take(self, actor: TradeActor) -> float | None:
        """A closing trade's unsaved best price, taken out of the batch (written with its
        close)."""
        self._dirty.pop(actor.trade_id, None)
        return actor.take_progress()

    async def run(self) -> None:
        """Best prices that moved are written together, at most every ``persist_every_s``
        (trio time): a best price is never left unsaved because the market stopped making
        new ones, and a busy market costs one batched write per period."""
        while True:
            await self._dirty_event.wait()
            self._dirty_event = trio.Event()
            await self.flush()
            await trio.sleep(self.policy().persist_every_s)

    async def flush(self, everything: bool = False) -> None:
        """Write due best prices (all of them when ``everything``) in one batched write."""
        actors = self.slots.actors() if everything else list(self._dirty.values())
        self._dirty.clear()
        prices = [(a.trade_id, p) for a in actors if (p := a.take_progress()) is not None]
        if prices:  # queued in the store when not durable; the broker stop is the protection
            await durable(
                self.store.save_progress_many(prices), "best prices queued", trades=len(prices)
            )
