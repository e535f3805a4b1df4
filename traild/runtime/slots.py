"""The table of running actors: one slot per trade (its actor and its crash count), found by
trade id or by the broker's deal id."""

from __future__ import annotations

from dataclasses import dataclass

from traild.runtime.trade_actor import TradeActor


@dataclass(slots=True)
class Slot:
    actor: TradeActor
    crashes: int = 0


class Slots:
    """``by_trade`` is the supervisor's ``slots``; a deal stays known after its trade was
    abandoned (its broker position is traild's, left to its broker stop: not adopted again)."""

    def __init__(self) -> None:
        self.by_trade: dict[int, Slot] = {}
        self._deals: dict[str, int] = {}  # deal id -> trade id of every actor started

    def add(self, actor: TradeActor) -> None:
        self.by_trade[actor.trade_id] = Slot(actor)
        self._deals[actor.trade.deal_id] = actor.trade_id

    def get(self, trade_id: int) -> Slot | None:
        return self.by_trade.get(trade_id)

    def running(self, trade_id: int) -> TradeActor | None:
        slot = self.by_trade.get(trade_id)
        return None if slot is None else slot.actor

    def trade_of_deal(self, deal_id: str) -> int | None:
        return self._deals.get(deal_id)

    def actor_of_deal(self, deal_id: str) -> TradeActor | None:
        trade_id = self._deals.get(deal_id)
        return None if trade_id is None else self.running(trade_id)

    def actors(self, epic: str | None = None) -> list[TradeActor]:
        """The running actors (of ``epic``, when given)."""
        return [
            s.actor for s in self.by_trade.values() if epic is None or s.actor.trade.epic == epic
        ]

    def abandon(self, trade_id: int) -> None:
        """The actor is gone; its deal stays known."""
        self.by_trade.pop(trade_id, None)

    def close(self, trade_id: int, deal_id: str) -> Slot | None:
        """The trade closed: forgotten, its slot returned (None when it was not running)."""
        self._deals.pop(deal_id, None)
        return self.by_trade.pop(trade_id, None)
