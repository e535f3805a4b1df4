"""Numbers read at the edges (configuration tables, CSV cells): finite floats or a named error."""

from __future__ import annotations

import math
from decimal import Decimal


def finite_number(raw: object, what: str, error: type[Exception] = ValueError) -> float:
    """``raw`` (a number, or its text) as a finite float; otherwise ``error`` naming ``what``.
    A bool is not a number."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        raise error(f"{what} is not a number: {raw!r}")
    try:
        value = float(raw)
    except ValueError:
        raise error(f"{what} is not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise error(f"{what} is not finite: {raw!r}")
    return value
