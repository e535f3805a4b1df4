"""Row writes: one row inserted or updated by its id, which the writer runs in groups.

Most of the daemon's writes are one row each (an amendment inserted or moved to a new state, a
trade's stop, a close, a method). Inside one batch transaction (``plan``) writes of the same
*shape* — the same statement: table, insert or update, and columns — run as one
``executemany``, one round trip to the driver (for SQLite: one hand-off to aiosqlite's thread)
instead of one per row. A write says which row writes it is through ``RowOp.parts``; any other
op is opaque (it may touch anything) and runs alone.

Each write keeps its meaning alone: an update that matches no row is refused (``MissingRow``),
also inside a group — SQLite counts the rows of an ``executemany`` (it must equal the number of
writes), PostgreSQL's driver does not, so there the group's ids are counted in the same
transaction. A refused group fails its batch, and the writer then commits the batch's writes one
by one, so only the refused write fails (as before).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from traild.adapters.store.models import TRADE_LOG
from traild.adapters.store.writer import Op

# trade_log columns whose change numbers the row (trigger ``change_seq``, migration 0006): the
# writes that set one keep their order among themselves, so the numbers follow the queue.
WATCHED = frozenset(("status", "trailing_override", "entry_price"))
CHANGE_SEQ = ("trade_log", "change_seq")  # the key every such write touches


class MissingRow(Exception):
    """An update that matched no row: the database refused it for good (not retried)."""


Shape = tuple[str, str, tuple[str, ...], tuple[str, ...]]


class RowOp(ABC):
    """A write op made of row writes (``parts``) the writer may group with other writes'."""

    __slots__ = ()

    @property
    @abstractmethod
    def parts(self) -> Sequence[RowWrite] | None:
        """The op's row writes, in order (None: it is opaque after all)."""


@dataclass(eq=False, slots=True)
class RowWrite(RowOp):
    """Insert (``kind="insert"``, ``values`` holding the id) or update one row by ``row``.

    ``values`` is read when the write runs: until the database takes an amendment insert, a
    state change may be folded into it (``AmendmentLog._fold``). ``first`` names update
    columns set only while NULL (``profit_lock_applied_at``: the first lock)."""

    table: sa.Table
    kind: str
    row: int
    values: dict[str, Any]
    first: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[RowWrite, ...]:
        return (self,)

    def shape(self) -> Shape:
        return (self.kind, self.table.name, tuple(sorted(self.values)), self.first)

    def keys(self) -> tuple[Hashable, ...]:
        """What the write touches: its row (and trade_log's change numbering, see WATCHED)."""
        key = (self.table.name, self.row)
        numbered = self.kind == "insert" or not WATCHED.isdisjoint(self.values)
        if self.table is TRADE_LOG and numbered:
            return (key, CHANGE_SEQ)
        return (key,)

    def params(self) -> dict[str, Any]:
        if self.kind == "insert":
            return dict(self.values)
        params = {f"_v_{name}": value for name, value in self.values.items()}
        params["_id"] = self.row
        return params

    async def __call__(self, conn: AsyncConnection) -> None:
        await execute_group(conn, [self])


@dataclass(eq=False, slots=True)
class RowWrites(RowOp):
    """Several row writes of one store call (a confirmation: the amendment and the trade's
    stop), in one transaction."""

    items: tuple[RowWrite, ...]

    @property
    def parts(self) -> tuple[RowWrite, ...]:
        return self.items

    async def __call__(self, conn: AsyncConnection) -> None:
        for part in self.items:
            await part(conn)


def update_one(
    table: sa.Table, row_id: int, values: dict[str, Any], first: tuple[str, ...] = ()
) -> RowWrite:
    """An update of exactly one row by id; a missing row fails the write for good."""
    return RowWrite(table, "update", row_id, values, first)


def insert_one(table: sa.Table, values: dict[str, Any]) -> RowWrite:
    """An insert of one row whose id is in ``values``."""
    return RowWrite(table, "insert", int(values["id"]), values)


_STATEMENTS: dict[Shape, sa.Executable] = {}


def _statement(write: RowWrite) -> sa.Executable:
    shape = write.shape()
    statement = _STATEMENTS.get(shape)
    if statement is None:
        table = write.table
        if write.kind == "insert":
            statement = table.insert()
        else:
            values: dict[str, Any] = {}
            for name in write.values:
                column = table.c[name]
                param = sa.bindparam(f"_v_{name}", type_=column.type)
                values[name] = sa.func.coalesce(column, param) if name in write.first else param
            statement = table.update().where(table.c.id == sa.bindparam("_id")).values(values)
        if len(_STATEMENTS) < 256:  # shapes are few (a handful of store calls)
            _STATEMENTS[shape] = statement
    return statement


async def execute_group(conn: AsyncConnection, writes: Sequence[RowWrite]) -> None:
    """Run writes of one shape as one statement (executemany when several), in order."""
    head = writes[0]
    statement = _statement(head)
    params = [w.params() for w in writes]
    result = await conn.execute(statement, params if len(params) > 1 else params[0])
    if head.kind == "insert":
        return
    if len(params) == 1 or conn.dialect.supports_sane_multi_rowcount:
        if result.rowcount == len(params):
            return
    else:  # the driver does not count an executemany's rows: count the ids that exist
        ids = sorted({w.row for w in writes})
        table = head.table
        found = await conn.scalar(
            sa.select(sa.func.count()).select_from(table).where(table.c.id.in_(ids))
        )
        if found == len(ids):
            return
    missing = [w.row for w in writes]
    raise MissingRow(f"no {head.table.name} row {missing[0] if len(missing) == 1 else missing}")


@dataclass(slots=True)
class Step:
    """One step of a batch's transaction: a group of row writes of one ``shape`` run together,
    or (``shape`` None) one opaque op alone. ``items``: (index of the op in the batch,
    row write/op)."""

    shape: Hashable | None
    items: list[tuple[int, Any]] = field(default_factory=list)


def plan(ops: Sequence[Op]) -> list[Step]:
    """The steps that run ``ops`` (in queue order) in one transaction with same-shaped row
    writes grouped. A row write joins an earlier group of its shape only when no step after
    that group touches one of its keys; an opaque op (it may touch anything) runs alone and
    nothing moves ahead of it. So every row sees its writes in queue order."""
    steps: list[Step] = []
    open_steps: dict[Hashable, int] = {}  # shape -> its latest group
    last: dict[Hashable, int] = {}  # key -> the latest step touching it
    floor = 0  # no row write moves ahead of an opaque op
    for i, op in enumerate(ops):
        parts = op.parts if isinstance(op, RowOp) else None
        if parts is None:
            steps.append(Step(None, [(i, op)]))
            floor = len(steps)
            continue
        for part in parts:
            shape, keys = part.shape(), part.keys()
            at = open_steps.get(shape, -1)
            if at < floor or any(last.get(k, -1) > at for k in keys):
                at = len(steps)
                steps.append(Step(shape))
                open_steps[shape] = at
            steps[at].items.append((i, part))
            for k in keys:
                last[k] = at
    return steps
