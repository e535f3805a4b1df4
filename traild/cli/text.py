"""Text for the terminal shared by the command modules."""

from __future__ import annotations


def cell(value: float | None, spec: str = "g") -> str:
    """A table cell: ``-`` for no value, else the value formatted by ``spec`` (``+.2f``: pips
    with their sign)."""
    return "-" if value is None else format(value, spec)
