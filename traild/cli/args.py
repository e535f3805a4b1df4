"""Argument types and options shared by the command modules.

argparse turns the ValueError/ArgumentTypeError they raise into one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from traild.core.messages import Direction

_Number = TypeVar("_Number", int, float)

CONFIG_HELP = "config file (default: $TRAILD_CONFIG, else ./config/traild.toml if present)"


def finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _checked(value: _Number, ok: bool, problem: str) -> _Number:
    """``value`` when ``ok``, else the one-line ``problem``."""
    if not ok:
        raise argparse.ArgumentTypeError(problem)
    return value


def positive_float(text: str) -> float:
    value = finite(text)
    return _checked(value, value > 0, f"must be positive: {text!r}")


def non_negative_float(text: str) -> float:
    value = finite(text)
    return _checked(value, value >= 0, f"must not be negative: {text!r}")


def positive_or_any_float(text: str) -> float:
    """ATR: any finite number; zero/negative ATR is a documented fallback (invalid_atr)."""
    return finite(text)


DIRECTION_HELP = "BUY or SELL (also LONG/SHORT; any case)"


def number(
    text: str,
    convert: Callable[[str], _Number],
    ok: Callable[[_Number], bool],
    not_a: str,
    problem: str,
) -> _Number:
    """``text`` as ``convert`` reads it; the message ``not_a`` when it cannot, ``problem`` when
    the value is not ``ok`` (each followed by the text)."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{not_a}: {text!r}") from None
    return _checked(value, ok(value), f"{problem}: {text!r}")


def positive_int(text: str) -> int:
    """A whole number of at least 1 (counts, limits)."""
    return number(text, int, lambda v: v >= 1, "not a whole number", "must be at least 1")


def non_negative_int(text: str) -> int:
    """A whole number of at least 0 (seeds)."""
    return number(text, int, lambda v: v >= 0, "not a whole number", "must not be negative")


def direction(text: str) -> Direction:
    try:
        return Direction.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {DIRECTION_HELP}, not {text!r}") from None


def timestamp(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


WHO_MAX = 64  # the audit columns' width (trailing_config.updated_by, config_change.changed_by)


def who(text: str) -> str:
    """A name for the audit trail: one printable line of at most WHO_MAX characters."""
    value = text.strip()
    if not value.isprintable():
        raise argparse.ArgumentTypeError("must be one line of printable characters")
    if len(value) > WHO_MAX:
        raise argparse.ArgumentTypeError(f"at most {WHO_MAX} characters, not {len(value):,}")
    return value


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$", re.IGNORECASE)
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def since(text: str) -> datetime | None:
    """``7d`` / ``12h`` / ``30m`` before now, an ISO date or time (UTC if naive), or ``all``."""
    if text.strip().lower() == "all":
        return None
    match = _AGE.match(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        try:
            return datetime.now(UTC) - timedelta(**{_UNITS[unit]: amount})
        except OverflowError:  # before year 1: every trade
            raise argparse.ArgumentTypeError(
                f"--since {text!r} reaches before year 1; use 'all' for every trade"
            ) from None
    try:
        return timestamp(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"--since wants Nd, Nh, Nm, an ISO date/time or 'all', not {text!r}"
        ) from None


def actions_of(sub: Any, name: str, help: str) -> Any:
    """A command made of actions (``traild config set``): its required sub-commands, the one
    chosen in ``args.<name>_command``."""
    command = sub.add_parser(name, help=help)
    actions = command.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    actions.required = True
    return actions


def add_since(parser: Any, help: str, **kwargs: Any) -> None:
    """A ``--since AGE|DATE`` option (``since`` above); ``kwargs``: default, required, ..."""
    parser.add_argument("--since", type=since, metavar="AGE|DATE", help=help, **kwargs)
