"""The stop_amendment write-ahead log: a ``pending`` row before the broker is asked, then its
state changes and the confirmation that sets the trade's ``sl_price``.

Amendment ids are allocated here (not by the database), so a caller whose write is still
queued (``WriteQueued``) already knows its amendment's id. All these writes take the writer's
urgent lane. While an insert is still queued, later state changes of the same amendment are
folded into it (``_fold``): under load one row is written once instead of three times.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from traild.adapters.store.models import STOP_AMENDMENT, TRADE_LOG
from traild.adapters.store.records import checked
from traild.adapters.store.rows import MissingRow, RowWrites, insert_one, update_one
from traild.adapters.store.tables import UNFINISHED_STATES
from traild.adapters.store.writer import NOT_LANDED, Op, Write
from traild.adapters.store.writes import WritePath
from traild.core.errors import StoreError
from traild.core.messages import AmendState

_ERROR_CHARS = 500
_FOLD_LIMIT = 4096  # queued amendment inserts remembered for folding before a sweep
_TRADES_LIMIT = 1 << 16  # amendments whose trade is remembered for their confirmation


class AmendmentLog:
    """The amendment writes of ``traild.ports.TradeStore`` (see the module docstring)."""

    def __init__(self, path: WritePath) -> None:
        self._path = path
        self.next_id = 1
        self._replay_top = 0  # the highest amendment id applied again from the journal
        # amendment inserts not yet handed to the database, with the values they will write:
        # a state change arriving meanwhile is folded into the insert (see _fold)
        self._queued_inserts: dict[int, tuple[Write, dict[str, Any]]] = {}
        self._amendment_trades: dict[int, int] = {}  # amendment id -> trade id, until final

    def follow(self, last: int) -> None:
        """Ids continue after ``last``, the highest id the database has (or another owner
        wrote), unless they are past it already."""
        self.next_id = max(self.next_id, last + 1)

    def reserve(self, amendment_id: int) -> None:
        """Applying the journal: the next insert takes this id (its own, from the run that
        wrote it); ``replayed`` then tells where later ones continue."""
        self._replay_top = max(self._replay_top, amendment_id)
        self.next_id = amendment_id

    def replay_started(self) -> int:
        """Before the journal is applied: the id new amendments would take now."""
        self._replay_top = 0
        return self.next_id

    def replayed(self, following: int) -> None:
        """After the journal is applied: ids continue after both ``following`` (from before
        the replay) and the highest id the journal held."""
        self.next_id = max(following, self._replay_top + 1)

    async def write_amendment(
        self,
        trade_id: int,
        deal_id: str,
        requested: float,
        previous: float | None,
        reason: str,
        ts: datetime,
        durable: bool = True,
    ) -> int:
        """The id is allocated here, so WriteQueued carries it too."""
        path = self._path
        amendment_id = self.next_id
        seq = path.jot(
            "amend", id=amendment_id, trade_id=trade_id, deal_id=deal_id, requested=requested,
            previous=previous, reason=reason, ts=ts,
        )  # fmt: skip
        values = checked(
            {
                "id": amendment_id,
                "trade_id": trade_id,
                "deal_id": deal_id,
                "requested_level": requested,
                "previous_level": previous,
                "reason": reason,
                "state": AmendState.PENDING,
                "created_at": ts,
                "updated_at": ts,
                "lease_token": path.fence.token,
            }
        )
        self.next_id += 1

        insert = insert_one(STOP_AMENDMENT, values)  # folded changes land with it

        async def landed(conn: AsyncConnection) -> Any:
            a = STOP_AMENDMENT.c
            found = await conn.scalar(
                sa.select(a.id).where(
                    a.id == amendment_id, a.trade_id == trade_id, a.requested_level == requested
                )
            )
            return NOT_LANDED if found is None else None

        op: Op = insert
        if path.replaying is not None:
            op = _if_absent(insert, landed)  # the row may have landed before the stop
        if len(self._amendment_trades) >= _TRADES_LIMIT:  # amendments never concluded
            self._amendment_trades.clear()  # (their confirmation looks the trade up)
        self._amendment_trades[amendment_id] = trade_id
        write = await path.writer.submit(op, trade_id=trade_id, urgent=True, landed=landed, seq=seq)
        if len(self._queued_inserts) >= _FOLD_LIMIT:
            self._queued_inserts = {k: v for k, v in self._queued_inserts.items() if not v[0].taken}
        self._queued_inserts[amendment_id] = (write, values)
        await path.settle(write, durable, amendment_id)
        return amendment_id

    def _fold(
        self, amendment_id: int, changes: dict[str, Any]
    ) -> tuple[Write, dict[str, Any]] | None:
        """Fold ``changes`` into the amendment's insert if the database has not taken it yet
        (one row written once instead of an insert and updates); the insert's write and
        values, else None.

        Under load the writer runs behind the gateway: an amendment is usually sent, and often
        confirmed, before its pending row is written. The row then lands in its latest state;
        nothing durable is skipped (the insert was not durable either), and the audit trail
        keeps one row per amendment with its final state and times."""
        if self._path.replaying is not None:
            return None  # applying the journal: each record as it was (the insert may exist)
        entry = self._queued_inserts.pop(amendment_id, None)
        if entry is None or entry[0].taken:
            return None
        entry[1].update(changes)
        if changes.get("state") in UNFINISHED_STATES:
            self._queued_inserts[amendment_id] = entry  # more changes may follow
        return entry

    async def update_amendment(
        self,
        amendment_id: int,
        state: AmendState,
        ts: datetime,
        broker_ref: str | None = None,
        error: str | None = None,
        durable: bool = True,
    ) -> None:
        path = self._path
        try:
            values: dict[str, Any] = {"state": AmendState(state), "updated_at": ts}
        except ValueError:
            raise StoreError(f"unknown amendment state {state!r}") from None
        if broker_ref is not None:
            values["broker_ref"] = broker_ref
        if error is not None:
            values["error"] = error[:_ERROR_CHARS]
        values = checked(values)
        seq = path.jot(
            "amend_state", id=amendment_id, state=AmendState(state).value, ts=ts,
            ref=broker_ref, error=error,
        )  # fmt: skip
        if values["state"] not in UNFINISHED_STATES:
            self._amendment_trades.pop(amendment_id, None)
        folded = self._fold(amendment_id, values)
        if folded is not None:
            folded[0].journaled(seq)
            await path.settle(folded[0], durable, amendment_id)
            return
        op = update_one(STOP_AMENDMENT, amendment_id, values)
        write = await path.writer.submit(op, urgent=True, seq=seq)
        await path.settle(write, durable, amendment_id)

    async def confirm_amendment(
        self,
        amendment_id: int,
        level: float,
        ts: datetime,
        profit_lock: bool = False,
        durable: bool = True,
    ) -> None:
        """One transaction; with ``profit_lock`` the trade's profit_lock_applied_at is set,
        once (the first lock)."""
        path = self._path
        checked({"level": level, "ts": ts})
        seq = path.jot("confirm", id=amendment_id, level=level, ts=ts, lock=profit_lock)

        trade: dict[str, Any] = {"sl_price": level}
        if profit_lock:
            trade["profit_lock_applied_at"] = ts  # set once: the first lock (see rows.py)
        first = ("profit_lock_applied_at",) if profit_lock else ()
        changes = {"state": AmendState.CONFIRMED.value, "updated_at": ts}
        known = self._amendment_trades.pop(amendment_id, None)
        folded = self._fold(amendment_id, changes)
        op: Op
        if folded is not None:  # the row lands confirmed; then the trade
            op = update_one(TRADE_LOG, int(folded[1]["trade_id"]), trade, first)
        elif known is not None:  # the amendment's trade is known: two row writes, groupable
            op = RowWrites(
                (
                    update_one(STOP_AMENDMENT, amendment_id, changes),
                    update_one(TRADE_LOG, known, trade, first),
                )
            )
        else:
            op = _confirm_unknown_trade(amendment_id, ts, trade, first)
        write = await path.writer.submit(op, urgent=True, seq=seq)
        await path.settle(write, durable, amendment_id)


def _confirm_unknown_trade(
    amendment_id: int, ts: datetime, trade: dict[str, Any], first: tuple[str, ...]
) -> Op:
    """Confirm the amendment and update the trade its row names (one transaction)."""

    async def confirm(conn: AsyncConnection) -> None:
        amendment = STOP_AMENDMENT.c
        result = await conn.execute(
            STOP_AMENDMENT.update()
            .where(amendment.id == amendment_id)
            .values(state=AmendState.CONFIRMED.value, updated_at=ts)
            .returning(amendment.trade_id)
        )
        trade_id = result.scalar_one_or_none()
        if trade_id is None:
            raise MissingRow(f"no stop_amendment {amendment_id}")
        await update_one(TRADE_LOG, trade_id, trade, first)(conn)

    return confirm


def _if_absent(insert: Op, landed: Op) -> Op:
    """An insert applied again from the journal: nothing when its row is there already."""

    async def op(conn: AsyncConnection) -> Any:
        if await landed(conn) is not NOT_LANDED:
            return None
        return await insert(conn)

    return op
