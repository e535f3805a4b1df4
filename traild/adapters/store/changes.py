"""The daemon's incremental poll of ``trade_log`` by ``change_seq`` (migrations 0006, 0007).

SQLite numbers every change once (writers are serialised). PostgreSQL numbers a change by its
writing transaction, so several rows can share a number, and a number is read only once no
transaction that could still commit below it is running (``traild_change_horizon()``): a page
never ends inside one transaction's rows, and the high-water mark never passes a row to come.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from traild.adapters.store.models import TRADE_LOG
from traild.adapters.store.records import trade_columns
from traild.core.messages import TradeStatus

OPEN_STATES = (TradeStatus.PENDING.value, TradeStatus.OPEN.value)


def of_account(account: str | None) -> sa.ColumnElement[bool]:
    """The trades a daemon of ``account`` owns: its own and those with no account (None: the
    command line, an unfenced store: every trade)."""
    column = TRADE_LOG.c.account
    if account is None:
        return sa.true()
    return sa.or_(column.is_(None), column == account)


def page(
    after: int, limit: int, open_only: bool, postgres: bool, account: str | None = None
) -> sa.Select[Any]:
    """Changes above ``after``, oldest first, at most ``limit`` (PostgreSQL: below the
    horizon), of ``account``'s trades."""
    seq = TRADE_LOG.c.change_seq
    statement = _select(open_only).where(seq > after, of_account(account))
    if postgres:
        statement = statement.where(seq < sa.func.traild_change_horizon())
    return statement.order_by(seq, TRADE_LOG.c.id).limit(limit)


def rest(
    seq_value: int, after_id: int, open_only: bool, account: str | None = None
) -> sa.Select[Any]:
    """The rows of change ``seq_value`` after row ``after_id``: the rest of a transaction a
    full page ended in."""
    c = TRADE_LOG.c
    statement = _select(open_only).where(
        c.change_seq == seq_value, c.id > after_id, of_account(account)
    )
    return statement.order_by(c.id)


def _select(open_only: bool) -> sa.Select[Any]:
    statement = sa.select(*trade_columns(), TRADE_LOG.c.change_seq)
    if open_only:
        statement = statement.where(TRADE_LOG.c.status.in_(OPEN_STATES))
    return statement
