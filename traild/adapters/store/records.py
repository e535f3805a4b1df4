"""Rows to traild's records and back. No ORM object leaves the store; bad rows fail here, loudly.

A trade's ``calculated_stages`` that is not a valid stage object is logged
(``store.corrupt_stages``) and returned as None: the trade falls back to fixed stages instead of
crashing the loader.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from loguru import logger

from traild.adapters.store.engine import CorruptJSON
from traild.adapters.store.models import ALERT_HISTORY, TRADE_LOG
from traild.core.calculator import CalculatedStages
from traild.core.errors import StageError, StoreError
from traild.core.messages import (
    AlertRecord,
    AmendmentRecord,
    AmendState,
    Direction,
    TradeRecord,
    TradeStatus,
)

TRADE_FIELDS = tuple(f.name for f in fields(TradeRecord) if f.name != "id")
# Fields adopt_trade may set: everything but the identity of the row.
ADOPTABLE = frozenset(TRADE_FIELDS) - {"deal_id"}
LEGACY_REGIME = "volatility_state"
OVERRIDES = ("fixed", "off")  # trade_log.trailing_override: the per-trade kill switch


def normalise_override(raw: object) -> str | None:
    """``trailing_override`` as traild means it: ``fixed``, ``off`` or None. Case and
    surrounding blanks do not matter (``'Off '`` is ``off``); an empty value is None; anything
    else is refused with StoreError (never half-applied)."""
    if raw is None:
        return None
    value = str(raw).strip().lower()
    if not value:
        return None
    if value not in OVERRIDES:
        raise StoreError(f"trailing_override must be 'fixed', 'off' or NULL, not {raw!r}")
    return value


class BadRow(ValueError):
    """A row that cannot become a record (e.g. a direction that is neither BUY nor SELL)."""


def checked(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain column values: enums as their strings; naive times and non-finite floats refused."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, datetime) and value.tzinfo is None:
            raise StoreError(f"{name}: naive datetime {value.isoformat()} (need aware UTC)")
        elif isinstance(value, float) and not math.isfinite(value):
            raise StoreError(f"{name}: not a finite number: {value!r}")
        elif isinstance(value, dict | list):
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise StoreError(f"{name}: not JSON-serialisable: {exc}") from None
        out[name] = value
    return out


def trade_values(trade: TradeRecord) -> dict[str, Any]:
    """The insert values of a new trade_log row."""
    if not trade.deal_id:
        raise StoreError("a trade needs a deal_id")
    values = checked({name: getattr(trade, name) for name in TRADE_FIELDS})
    values["trailing_override"] = normalise_override(values["trailing_override"])
    return values


def adopt_values(updates: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(updates) - ADOPTABLE)
    if unknown:
        raise StoreError(f"unknown trade_log field(s): {', '.join(unknown)}")
    values = checked(updates)
    if "trailing_override" in values:
        values["trailing_override"] = normalise_override(values["trailing_override"])
    return values


def trade_from_row(row: Mapping[Any, Any]) -> TradeRecord:
    data = {name: row[name] for name in TRADE_FIELDS}
    try:
        data["direction"] = Direction.parse(str(row["direction"]))
    except ValueError as exc:
        raise BadRow(f"trade {row['id']} ({row['deal_id']}): {exc}") from None
    data["status"] = _status(row)
    data["size"] = 1.0 if row["size"] is None else float(row["size"])
    data["is_scalp_trade"] = bool(row["is_scalp_trade"])
    data["calculated_stages"] = _stages(row)
    data["trailing_override"] = _override(row)
    return TradeRecord(id=row["id"], **data)


def _override(row: Mapping[Any, Any]) -> str | None:
    """A row written before the CHECK constraint (or by hand on a database without it) may
    hold anything: a value that is not an override is logged and the trade has none."""
    try:
        return normalise_override(row["trailing_override"])
    except StoreError as exc:
        logger.bind(
            event="store.bad_override",
            trade_id=row["id"],
            deal_id=row["deal_id"],
            value=str(row["trailing_override"]),
        ).error("trade {}: {}; ignored (no per-trade override)", row["id"], exc)
        return None


def _status(row: Mapping[Any, Any]) -> TradeStatus:
    raw = str(row["status"])
    try:
        return TradeStatus(raw)
    except ValueError:
        guess = TradeStatus.CLOSED if row["closed_at"] is not None else TradeStatus.UNMANAGED
        logger.bind(
            event="store.unknown_status", trade_id=row["id"], deal_id=row["deal_id"], status=raw
        ).warning("trade {} has status {!r}; reported as {}", row["id"], raw, guess.value)
        return guess


def _stages(row: Mapping[Any, Any]) -> dict[str, Any] | None:
    raw = row["calculated_stages"]
    if raw is None:
        return None
    try:
        if isinstance(raw, CorruptJSON):
            raise StageError(f"not valid JSON: {raw.text[:80]!r}")
        CalculatedStages.from_json(raw)
    except (StageError, ValueError, TypeError) as exc:
        logger.bind(
            event="store.corrupt_stages", trade_id=row["id"], deal_id=row["deal_id"], error=str(exc)
        ).warning(
            "trade {}: stored calculated_stages unusable ({}); falling back to fixed",
            row["id"],
            exc,
        )
        return None
    return dict(raw)


def alert_table(present: set[str]) -> sa.TableClause:
    """alert_history as this database has it: only its columns, the legacy regime name too."""
    columns = [sa.column(c.name, c.type) for c in ALERT_HISTORY.columns if c.name in present]
    if LEGACY_REGIME in present:
        columns.append(sa.column(LEGACY_REGIME, sa.String()))
    return sa.table(ALERT_HISTORY.name, *columns)


def alert_values(alert: AlertRecord, table: sa.TableClause) -> dict[str, Any]:
    values = {c.name: getattr(alert, c.name) for c in ALERT_HISTORY.columns if c.name in table.c}
    if "volatility_regime" not in table.c and LEGACY_REGIME in table.c:
        values[LEGACY_REGIME] = alert.volatility_regime
    if alert.id <= 0:
        del values["id"]
    return checked(values)


def alert_from_row(row: Mapping[Any, Any]) -> AlertRecord:
    atr = row.get("atr")
    return AlertRecord(
        id=row["id"],
        epic=row["epic"],
        atr=None if atr is None else float(atr),
        volatility_regime=row.get("volatility_regime") or row.get(LEGACY_REGIME),
        market_regime=row.get("market_regime"),
        market_session=row.get("market_session"),
        strategy=row.get("strategy"),
        created_at=row.get("created_at"),
    )


def amendment_from_row(row: Mapping[Any, Any]) -> AmendmentRecord:
    try:
        state = AmendState(row["state"])
    except ValueError:
        raise BadRow(f"amendment {row['id']}: unknown state {row['state']!r}") from None
    return AmendmentRecord(
        id=row["id"],
        trade_id=row["trade_id"],
        deal_id=row["deal_id"],
        requested_level=row["requested_level"],
        previous_level=row["previous_level"],
        reason=row["reason"],
        state=state,
        broker_ref=row["broker_ref"],
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def trade_columns() -> list[sa.Column[Any]]:
    """The trade_log columns a TradeRecord is built from (id first)."""
    return [TRADE_LOG.c.id, *(TRADE_LOG.c[name] for name in TRADE_FIELDS)]


def trades_from_rows(rows: Sequence[Mapping[Any, Any]]) -> list[TradeRecord]:
    """Rows to records; a row that cannot be one is logged and skipped, never fatal."""
    out: list[TradeRecord] = []
    for row in rows:
        try:
            out.append(trade_from_row(row))
        except BadRow as exc:
            logger.bind(event="store.bad_row", trade_id=row["id"], deal_id=row["deal_id"]).error(
                "skipping unreadable trade_log row: {}", exc
            )
    return out


def one_trade(rows: Sequence[Mapping[Any, Any]]) -> TradeRecord | None:
    if not rows:
        return None
    try:
        return trade_from_row(rows[0])
    except BadRow as exc:
        raise StoreError(str(exc)) from None
