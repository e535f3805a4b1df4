"""IG's PRICE items on Lightstreamer, sans-IO: the subscribed fields, IG's dealing states,
``price_of`` (a PRICE update read: wire prices, epoch-ms time, dealing state) and
``StaleTracker`` (which epics went quiet). The protocol itself is in ``tlcp``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from traild.adapters.ig.tlcp import ItemUpdate

# PRICE:{accountId}:{epic} with data adapter Pricing (IG's "MARKET to PRICE subscription
# migration guide", 2026-05; trading-ig sample/stream_ig.py, Aug 2026).
PRICE_ADAPTER = "Pricing"
PRICE_FIELDS = ("BIDPRICE1", "ASKPRICE1", "TIMESTAMP", "DLG_FLAG")
# IG's dealing states (DLG_FLAG) and whether IG accepts a stop amendment in them. Documented
# in the README ("IG dealing states"). Unknown states count as not amendable and are logged.
DEALING_STATES: Mapping[str, bool] = {
    "DEAL": True,  # open for dealing
    "EDIT": True,  # edits only: amending a stop is an edit
    "CLOSINGSONLY": True,  # only closing deals; attached stop/limit edits allowed (assumption)
    "DEALNOEDIT": False,  # new deals but no edits: a stop amendment is an edit
    "AUCTION": False,  # opening/closing auction: IG prices but does not edit orders (assumption)
    "AUCTIONNOEDIT": False,
    "CALL": False,  # call period before the open
    "CLOSED": False,
    "SUSPEND": False,
}
AMENDABLE_STATES = frozenset(state for state, ok in DEALING_STATES.items() if ok)


@dataclass(frozen=True, slots=True)
class PriceUpdate:
    """What a PRICE update says: wire prices (None when missing), time, dealing state."""

    bid: float | None
    offer: float | None
    ts: datetime | None
    state: str | None
    price_changed: bool
    bad_ts: str | None = None  # a TIMESTAMP that is there but not epoch milliseconds


def price_of(update: ItemUpdate) -> PriceUpdate:
    """Read BIDPRICE1 / ASKPRICE1 / TIMESTAMP (epoch ms) / DLG_FLAG (space-padded: stripped)."""
    values, before = update.values, update.before
    state = values.get("DLG_FLAG")
    changed = before is None or any(
        before.get(name) != values.get(name) for name in ("BIDPRICE1", "ASKPRICE1", "TIMESTAMP")
    )
    raw_ts = values.get("TIMESTAMP")
    ts = epoch_ms(raw_ts)
    return PriceUpdate(
        _price(values.get("BIDPRICE1")),
        _price(values.get("ASKPRICE1")),
        ts,
        state.strip().upper() or None if state is not None else None,
        changed,
        raw_ts[:40] if ts is None and raw_ts else None,
    )


def epoch_ms(text: str | None) -> datetime | None:
    """IG's TIMESTAMP (milliseconds since the epoch) -> aware UTC; None when not a number."""
    if text is None:
        return None
    try:
        millis = int(text.strip())
    except ValueError:
        return None
    if millis <= 0:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC)


class StaleTracker:
    """Per-epic freshness on a monotonic clock: which epics just went stale or came back."""

    def __init__(self, epics: Iterable[str], stale_after: float, now: float) -> None:
        self.stale_after = stale_after
        self._last = dict.fromkeys(epics, now)
        self._stale: set[str] = set()

    def touch(self, epic: str, now: float) -> bool:
        """Record an update; True when the epic was stale until now."""
        self._last[epic] = now
        if epic in self._stale:
            self._stale.discard(epic)
            return True
        return False

    def check(self, now: float) -> list[tuple[str, float]]:
        """Epics that became stale since the last check, with their silence in seconds."""
        fresh = [
            (epic, now - last)
            for epic, last in self._last.items()
            if epic not in self._stale and now - last >= self.stale_after
        ]
        self._stale.update(epic for epic, _ in fresh)
        return fresh

    def stale(self) -> frozenset[str]:
        return frozenset(self._stale)


def _price(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None
