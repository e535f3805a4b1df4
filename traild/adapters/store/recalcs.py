"""``stage_recalculation``: the append-only history of real-time stage recalculations.

One write appends the history row and makes its stages the trade's current
``calculated_stages`` (method and fallback reason included) in the same transaction; retried
after an unknown commit outcome, it writes the same state again and no second row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from traild.adapters.store.engine import dialect_insert
from traild.adapters.store.models import STAGE_RECALCULATION
from traild.adapters.store.records import checked
from traild.core.messages import StageRecalculation

_FIELDS = tuple(f.name for f in fields(StageRecalculation) if f.name != "id")


def values(rec: StageRecalculation) -> tuple[dict[str, Any], dict[str, Any]]:
    """The history row of ``rec`` and the trade_log values it makes current."""
    row = checked({name: getattr(rec, name) for name in _FIELDS})
    trade = checked(
        {
            "calculated_stages": rec.new_stages,
            "trailing_calculation_method": rec.method,
            "fallback_reason": rec.fallback_reason,
        }
    )
    return row, trade


def insert(dialect: str, row: Mapping[str, Any]) -> sa.Insert:
    """The history row; one of the same trade and time already there (a retried insert whose
    first commit landed) is kept, not doubled (the natural key of migration 0007)."""
    statement: sa.Insert = (
        dialect_insert(dialect, STAGE_RECALCULATION)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["trade_id", "recalculated_at"])
    )
    return statement


def select_since(since: datetime | None) -> sa.Select[Any]:
    """Recalculations at/after ``since`` (all when None), oldest first."""
    statement = sa.select(STAGE_RECALCULATION).order_by(STAGE_RECALCULATION.c.id)
    if since is not None:
        checked({"since": since})
        statement = statement.where(STAGE_RECALCULATION.c.recalculated_at >= since)
    return statement


def from_rows(rows: Sequence[Mapping[Any, Any]]) -> list[StageRecalculation]:
    return [StageRecalculation(**{n: row[n] for n in (*_FIELDS, "id")}) for row in rows]
