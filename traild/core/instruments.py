"""Instruments: epic -> pip size, tick size and broker scale; exact price <-> tick conversion.

Inside the core every price is an integer number of ticks and every configured distance an
integer number of centipips (1/100 pip), so triggers compare exactly: a BUY from 1.10000 reaches
+10 pips at bid 1.10100, never one tick later because of binary floating point.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from traild.core.errors import InstrumentError

CENTI = 100  # centipips per pip

# Currencies whose pairs quote to 4 decimals per pip (1 pip = 0.0001) unless JPY is the quote.
_FOUR_DECIMAL = frozenset(
    [
        "USD",
        "EUR",
        "GBP",
        "AUD",
        "NZD",
        "CAD",
        "CHF",
        "SEK",
        "NOK",
        "DKK",
        "SGD",
        "HKD",
        "ZAR",
        "MXN",
        "PLN",
        "TRY",
        "CNH",
    ]
)
_GOLD = ("XAU", "GOLD")
_PAIR = re.compile(r"^[A-Z]{6}$")


@dataclass(frozen=True, slots=True)
class Instrument:
    """How one market is priced. ``broker_scale`` multiplies prices on the broker's wire."""

    symbol: str
    pip_size: Decimal
    tick_size: Decimal
    broker_scale: int = 1
    min_stop_distance_pips: Decimal = Decimal(0)
    ticks_per_pip: int = field(init=False)
    decimals: int = field(init=False)
    _inv_tick: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.pip_size <= 0 or self.tick_size <= 0:
            raise InstrumentError(f"{self.symbol}: pip and tick sizes must be positive")
        ratio = self.pip_size / self.tick_size
        if ratio != ratio.to_integral_value():
            raise InstrumentError(
                f"{self.symbol}: pip_size {self.pip_size} is not a whole number of ticks "
                f"of {self.tick_size}"
            )
        exponent = self.tick_size.normalize().as_tuple().exponent
        decimals = max(0, -exponent) if isinstance(exponent, int) else 0
        object.__setattr__(self, "ticks_per_pip", int(ratio))
        object.__setattr__(self, "decimals", decimals)
        object.__setattr__(self, "_inv_tick", float(1 / self.tick_size))

    # -- prices ---------------------------------------------------------------------------
    def to_ticks(self, price: float | str | Decimal) -> int:
        """Price -> nearest integer tick (exact for prices on the tick grid)."""
        if isinstance(price, float):
            return round(price * self._inv_tick)
        return int((Decimal(price) / self.tick_size).to_integral_value())

    def to_price(self, ticks: int) -> float:
        """Integer ticks -> price as a float rounded to the instrument's tick decimals."""
        return round(ticks * float(self.tick_size), self.decimals)

    def to_decimal(self, ticks: int) -> Decimal:
        """Integer ticks -> exact Decimal price."""
        return ticks * self.tick_size

    # -- distances ------------------------------------------------------------------------
    def pips(self, ticks: int | float) -> float:
        """A distance in ticks expressed in pips."""
        return ticks / self.ticks_per_pip

    def centipips_to_ticks_ceil(self, centipips: int) -> int:
        """Smallest whole number of ticks covering ``centipips`` (rounds away from zero)."""
        return -(-centipips * self.ticks_per_pip // CENTI)

    def centipips_to_ticks_floor(self, centipips: int) -> int:
        """Largest whole number of ticks within ``centipips``."""
        return centipips * self.ticks_per_pip // CENTI

    def to_broker(self, price: float) -> float:
        """traild price -> broker wire level (CEEM epics are x10000 on IG's REST API)."""
        return round(price * self.broker_scale, max(0, self.decimals - _digits(self.broker_scale)))

    def from_broker(self, level: float) -> float:
        """Broker wire level -> traild price."""
        return round(level / self.broker_scale, self.decimals)


def _digits(scale: int) -> int:
    return round(math.log10(scale)) if scale > 1 else 0


def to_centipips(pips: float | Decimal | str) -> int:
    """Pips (possibly fractional) -> integer centipips, rounded half-up at 0.01 pip."""
    value = Decimal(str(pips)) if isinstance(pips, float) else Decimal(pips)
    return int((value * CENTI).to_integral_value(rounding="ROUND_HALF_UP"))


def symbol_of(epic: str) -> str:
    """The instrument symbol of an epic: ``CS.D.GBPUSD.MINI.IP`` -> ``GBPUSD``; ``EURUSD`` as is."""
    text = epic.strip().upper()
    parts = [p for p in re.split(r"[./_\-: ]", text) if p]
    for part in parts:
        if any(g in part for g in _GOLD):
            return "XAUUSD" if "XAU" in part else part
    for part in parts:
        if _PAIR.match(part) and _is_pair(part):
            return part
    raise InstrumentError(f"unknown instrument for epic {epic!r}: no currency pair or gold in it")


def _is_pair(symbol: str) -> bool:
    base, quote = symbol[:3], symbol[3:]
    known = _FOUR_DECIMAL | {"JPY"}
    return base in known and quote in known and base != quote and base != "JPY"


def builtin(symbol: str) -> Instrument:
    """The built-in instrument for a symbol (FX pair or gold)."""
    if any(g in symbol for g in _GOLD):
        return Instrument(symbol, Decimal("0.1"), Decimal("0.01"))
    if _PAIR.match(symbol) and _is_pair(symbol):
        if symbol.endswith("JPY"):
            return Instrument(symbol, Decimal("0.01"), Decimal("0.001"))
        return Instrument(symbol, Decimal("0.0001"), Decimal("0.00001"))
    raise InstrumentError(f"unknown instrument {symbol!r}")


@dataclass(frozen=True, slots=True)
class InstrumentOverride:
    """Config-supplied fields replacing the built-in ones (None keeps the built-in value)."""

    pip_size: Decimal | None = None
    tick_size: Decimal | None = None
    broker_scale: int | None = None
    min_stop_distance_pips: Decimal | None = None


class InstrumentTable:
    """Resolves epics to instruments: config overrides (by epic, then symbol), then built-ins."""

    def __init__(self, overrides: Mapping[str, InstrumentOverride] | None = None) -> None:
        self._overrides = {k.upper(): v for k, v in (overrides or {}).items()}
        self._cache: dict[str, Instrument] = {}

    def resolve(self, epic: str) -> Instrument:
        """The instrument of ``epic``; raises InstrumentError when there is none."""
        hit = self._cache.get(epic)
        if hit is not None:
            return hit
        inst = self._build(epic)
        self._cache[epic] = inst
        return inst

    def _build(self, epic: str) -> Instrument:
        key = epic.strip().upper()
        override = self._overrides.get(key)
        try:
            symbol = symbol_of(key)
        except InstrumentError:
            if override is None or override.pip_size is None or override.tick_size is None:
                raise
            symbol = key
        override = override or self._overrides.get(symbol)
        try:
            base = builtin(symbol)
        except InstrumentError:
            if override is None or override.pip_size is None or override.tick_size is None:
                raise InstrumentError(f"unknown instrument for epic {epic!r}") from None
            base = Instrument(symbol, override.pip_size, override.tick_size)
        scale = 10000 if ".CEEM." in f".{key}." else 1
        if override is None:
            return Instrument(symbol, base.pip_size, base.tick_size, scale)
        return Instrument(
            symbol,
            override.pip_size if override.pip_size is not None else base.pip_size,
            override.tick_size if override.tick_size is not None else base.tick_size,
            override.broker_scale if override.broker_scale is not None else scale,
            override.min_stop_distance_pips
            if override.min_stop_distance_pips is not None
            else Decimal(0),
        )
