"""The IG sim's market model: markets and open positions in normal prices, the ticks that
move them, the units IG quotes them in, and ``SimView``: what the REST and streaming halves
(``rest``, ``stream``) use of the sim, so that they depend on this module and not on the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


def points_scale(epic: str) -> int:
    """Wire units per price unit: CEEM and spread-bet (TODAY, DFB) FX are quoted in points
    (x10000, x100 for JPY quotes); everything else as prices (assumption, see SimMarket)."""
    parts = epic.upper().split(".")
    if not {"CEEM", "TODAY", "DFB"} & set(parts):
        return 1
    return 100 if any(p.endswith("JPY") for p in parts) else 10000


def point_size(epic: str) -> float:
    """Price size of one IG point: a pip on FX, 1.0 on gold."""
    upper = epic.upper()
    if "GOLD" in upper or "XAU" in upper:
        return 1.0
    return 0.01 if "JPY" in upper else 0.0001


@dataclass
class SimMarket:
    """One market: normal prices, its dealing state (DLG_FLAG), the minimum stop distance.

    ``scale``: how many wire units one price unit is. IG quotes CEEM and spread-bet FX
    (``TODAY``, ``DFB``) in points - EUR/USD 1.08345 as 10834.5 - and CFD minis in prices
    (IG REST reference, ``/markets`` ``snapshot.scalingFactor``; ecosystem research 6.4). Which
    epic families are quoted in points is an assumption from IG's dealing platform.
    """

    epic: str
    bid: float
    offer: float
    min_stop_distance: float = 0.0  # in ``unit``
    unit: str = "POINTS"
    state: str = "DEAL"
    update_time: str = "00:00:00"
    timestamp_ms: int = 0
    scale: int = 0  # 0: from the epic's family (see points_scale)
    quoted: bool = True  # False: the PRICE item streams null prices (no quote, assumption)
    timestamp_text: str | None = None  # streamed instead of timestamp_ms (a malformed value)

    def __post_init__(self) -> None:
        self.scale = self.scale or points_scale(self.epic)

    def wire(self, value: float) -> float:
        return round(value * self.scale, 6)


@dataclass
class SimPosition:
    """An open position in normal prices (the sim scales CEEM levels on the wire)."""

    epic: str
    direction: str
    level: float
    stop: float | None = None
    limit: float | None = None
    size: float = 1.0
    deal_id: str = ""
    created: datetime | None = None
    guaranteed: bool = False
    trailing_distance: float | None = None  # points; set = IG trails the stop itself


@dataclass(frozen=True, slots=True)
class SimTick:
    epic: str
    bid: float
    offer: float
    update_time: str | None = None


class SimView(Protocol):
    """The sim as ``rest`` and ``stream`` see it (``IGSim`` is the one implementation)."""

    api_key: str
    account_id: str
    accounts: list[str]
    markets: dict[str, SimMarket]
    positions: dict[str, SimPosition]
    hidden: dict[str, int]  # deal id -> GET /positions lists that leave it out
    amendments: list[tuple[str, dict[str, Any]]]
    conversions: list[tuple[str, str]]
    clock: Callable[[], datetime]

    def new_deal_id(self) -> str: ...

    def new_reference(self) -> str: ...

    def store_confirm(self, reference: str, payload: dict[str, Any]) -> None: ...

    def take_confirm(self, reference: str) -> dict[str, Any] | None: ...

    def publish_opu(self, position: SimPosition, status: str) -> None: ...

    def publish_confirm(self, payload: dict[str, Any]) -> None: ...

    def allowance_limits(self) -> tuple[int | None, int | None, int | None]: ...

    def account_for_stream(self, user: str, password: str) -> bool: ...
