"""Applying journal records again at start-up: each record kind back to the store's write.

A record says what a write method was called with (``journal.py``); applied again, in order,
through the same method (journaled under its old sequence), it makes the database hold what
the previous run had written or only queued. Inserts skip rows that exist; every update sets
absolute values, so a record the database already had changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from loguru import logger

from traild.adapters.store.journal import Entry
from traild.core.errors import StoreError, WriteQueued
from traild.core.messages import AmendState, StageRecalculation
from traild.ports import TradeStore


class Replaying(TradeStore, Protocol):
    """What applying the journal needs of the store (``SqlTradeStore``): its writes, plus
    journaling a write under its old sequence and reserving an amendment's old id."""

    async def replay_entry(self, entry: Entry, apply: Callable[[], Awaitable[None]]) -> None: ...

    def reserve_amendment_id(self, amendment_id: int) -> None: ...


Apply = Callable[[Replaying, dict[str, Any]], Awaitable[None]]


async def _amend(store: Replaying, r: dict[str, Any]) -> None:
    store.reserve_amendment_id(int(r["id"]))
    await store.write_amendment(
        r["trade_id"], r["deal_id"], r["requested"], r["previous"], r["reason"], r["ts"],
        durable=False,
    )  # fmt: skip


async def _amend_state(store: Replaying, r: dict[str, Any]) -> None:
    await store.update_amendment(
        r["id"], AmendState(r["state"]), r["ts"], broker_ref=r.get("ref"), error=r.get("error"),
        durable=False,
    )  # fmt: skip


async def _confirm(store: Replaying, r: dict[str, Any]) -> None:
    await store.confirm_amendment(r["id"], r["level"], r["ts"], bool(r["lock"]), durable=False)


async def _adopt(store: Replaying, r: dict[str, Any]) -> None:
    await store.adopt_trade(r["trade_id"], **r["fields"])


async def _adopt_many(store: Replaying, r: dict[str, Any]) -> None:
    await store.adopt_trades([(int(t), dict(f)) for t, f in r["updates"]])


async def _progress(store: Replaying, r: dict[str, Any]) -> None:
    await store.save_progress_many([(int(t), float(p)) for t, p in r["prices"]], durable=False)


async def _close(store: Replaying, r: dict[str, Any]) -> None:
    await store.close_trade(
        r["trade_id"], r["exit_price"], r["exit_reason"], r["pnl_pips"], r["closed_at"],
        durable=False,
    )  # fmt: skip


async def _status(store: Replaying, r: dict[str, Any]) -> None:
    await store.set_status(r["trade_id"], r["status"], r.get("reason"))


async def _method(store: Replaying, r: dict[str, Any]) -> None:
    await store.set_method(r["trade_id"], r["method"], r.get("fallback_reason"))


async def _recalc(store: Replaying, r: dict[str, Any]) -> None:
    await store.record_recalculation(StageRecalculation(**r["rec"]))


APPLY: dict[str, Apply] = {
    "amend": _amend,
    "amend_state": _amend_state,
    "confirm": _confirm,
    "adopt": _adopt,
    "adopt_many": _adopt_many,
    "progress": _progress,
    "close": _close,
    "status": _status,
    "method": _method,
    "recalc": _recalc,
}


async def replay(store: Replaying, entries: list[Entry]) -> list[int]:
    """Queue every record's write again, oldest first (the caller waits for the database).
    A record that cannot be applied (unknown kind, bad fields, refused by the database) is
    logged and skipped; returned, so it is acknowledged with the rest, never retried at every
    start."""
    skipped: list[int] = []
    for entry in entries:
        record = dict(entry.record)
        kind = str(record.pop("k", ""))
        apply = APPLY.get(kind)
        try:
            if apply is None:
                raise ValueError(f"unknown record kind {kind!r}")
            await store.replay_entry(entry, lambda a=apply, r=record: a(store, r))  # type: ignore[misc]
        except WriteQueued:
            continue  # queued: the caller waits until the database has it
        except (ValueError, KeyError, TypeError, StoreError) as exc:
            skipped.append(entry.seq)
            logger.bind(event="journal.bad_record", seq=entry.seq, kind=kind, error=str(exc)).error(
                "journal record {} cannot be applied; skipped", entry.seq
            )
    return skipped
