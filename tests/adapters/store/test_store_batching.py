"""Same-shaped writes of a batch run as one statement (issue 24), with the same outcome as
committing every write alone: the same rows, a refused write failing alone, the journal
acknowledged per write, and every row seeing its writes in queue order."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy.engine import make_url

from tests.adapters.store.store_helpers import T0, pg_execute, raw_sql, trade
from traild.adapters.store import SqlTradeStore, open_store, rows
from traild.adapters.store.models import STOP_AMENDMENT, TRADE_LOG
from traild.adapters.store.rows import insert_one, plan, update_one
from traild.core.messages import AmendState

# -- the planner on its own -------------------------------------------------------------------


@dataclass
class P(rows.RowOp):
    """A row write of shape ``s`` touching ``k``."""

    s: str
    k: tuple[Hashable, ...]

    @property
    def parts(self) -> tuple[P, ...]:
        return (self,)

    def shape(self) -> Hashable:
        return self.s

    def keys(self) -> tuple[Hashable, ...]:
        return self.k


def _layout(ops: list[Any]) -> list[tuple[Hashable | None, list[int]]]:
    return [(step.shape, [i for i, _ in step.items]) for step in plan(ops)]


def test_same_shaped_writes_of_different_rows_form_one_group_in_queue_order() -> None:
    ops = [P("sl", (1,)), P("amend", (10,)), P("sl", (2,)), P("amend", (11,)), P("sl", (3,))]
    assert _layout(ops) == [("sl", [0, 2, 4]), ("amend", [1, 3])]


def test_a_write_never_moves_ahead_of_a_queued_write_of_its_row() -> None:
    # sl of row 1, a close of row 1, sl of row 1 again: the second sl cannot join the first
    ops = [P("sl", (1,)), P("close", (1,)), P("sl", (1,)), P("sl", (2,))]
    assert _layout(ops) == [("sl", [0]), ("close", [1]), ("sl", [2, 3])]
    # two writes of one row in one group keep their order inside it (executemany runs in order)
    assert _layout([P("sl", (1,)), P("sl", (1,))]) == [("sl", [0, 1])]


def test_nothing_moves_ahead_of_an_opaque_op() -> None:
    async def opaque(_conn: Any) -> None:
        return None

    ops = [P("sl", (1,)), opaque, P("sl", (2,)), P("sl", (3,))]
    assert _layout(ops) == [("sl", [0]), (None, [1]), ("sl", [2, 3])]


def test_watched_trade_log_changes_keep_their_order_among_themselves() -> None:
    """Writes that number the row (``change_seq``) keep their order, so the numbers follow
    the queue: close A, status B, close C is not regrouped as close A, close C, status B."""
    close_a = update_one(TRADE_LOG, 1, {"status": "closed", "exit_price": 1.1})
    status_b = update_one(TRADE_LOG, 2, {"status": "closed"})
    close_c = update_one(TRADE_LOG, 3, {"status": "closed", "exit_price": 1.2})
    stop_d = update_one(TRADE_LOG, 4, {"sl_price": 1.0})
    stop_e = update_one(TRADE_LOG, 5, {"sl_price": 1.0})
    steps = _layout([close_a, stop_d, status_b, close_c, stop_e])
    assert [ids for _, ids in steps] == [[0], [1, 4], [2], [3]]


def test_an_amendment_insert_takes_the_columns_folded_into_it_when_it_runs() -> None:
    values = {"id": 7, "trade_id": 1, "state": "pending"}
    write = insert_one(STOP_AMENDMENT, values)
    before = write.shape()
    values.update({"state": "sent", "broker_ref": "REF"})  # a fold, before the writer takes it
    assert write.shape() != before and "broker_ref" in write.shape()[2]
    assert write.keys() == (("stop_amendment", 7),)


# -- on both engines: batched equals one by one ------------------------------------------------


async def _fresh(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database
        for suffix in ("", "-wal", "-shm"):
            await trio.Path(parsed.database + suffix).unlink(missing_ok=True)
    else:
        assert parsed.database
        await trio.to_thread.run_sync(
            pg_execute, parsed.database, ("DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
        )


async def _dump(url: str) -> tuple[list[Any], list[Any]]:
    """Every row. PostgreSQL numbers changes per transaction (migration 0007), so there
    ``change_seq`` depends on how writes share transactions and is left out; SQLite numbers
    every change and keeps it."""
    columns = [c.name for c in TRADE_LOG.c]
    if make_url(url).get_backend_name() != "sqlite":
        columns.remove("change_seq")
    trades = await raw_sql(url, f"SELECT {', '.join(columns)} FROM trade_log ORDER BY id")
    amendments = await raw_sql(url, "SELECT * FROM stop_amendment ORDER BY id")
    return trades, amendments


async def _mixed(store: SqlTradeStore, bad: bool = False) -> None:
    """A mix of every row write the daemon makes, queued without yielding (one batch)."""
    ids = []
    for n in range(5):
        added = await store.add_trade(trade(f"MIX-{n}"))
        assert added.id is not None
        ids.append(added.id)
    t1, t2, t3, t4, t5 = ids
    ts = [T0 + timedelta(seconds=s) for s in range(20)]
    taken = await store.write_amendment(t1, "MIX-0", 1.0990, 1.0985, "stage1", ts[0])
    other = await store.write_amendment(t5, "MIX-4", 1.0990, 1.0985, "stage1", ts[0])
    quiet = dict(durable=False)
    # from here on nothing yields to the writer: every write below lands in one transaction
    await store.update_amendment(taken, AmendState.SENT, ts[1], broker_ref="R1", **quiet)
    queued = await store.write_amendment(t2, "MIX-1", 1.0991, 1.0985, "stage1", ts[2], **quiet)
    await store.update_amendment(queued, AmendState.SENT, ts[3], broker_ref="R2", **quiet)
    await store.confirm_amendment(taken, 1.0990, ts[4], profit_lock=True, **quiet)
    await store.update_amendment(other, AmendState.SENT, ts[4], broker_ref="R5", **quiet)
    if bad:
        await store.update_amendment(999, AmendState.SENT, ts[5], **quiet)
    await store.close_trade(t3, 1.1010, "tp", 10.0, ts[5], **quiet)
    await store.save_progress(t1, 1.1020, durable=False)
    later = await store.write_amendment(t1, "MIX-0", 1.1000, 1.0990, "stage2", ts[6], **quiet)
    await store.confirm_amendment(queued, 1.0991, ts[7], **quiet)  # folded into its insert
    await store.update_amendment(other, AmendState.REJECTED, ts[8], error="too close", **quiet)
    await store.update_amendment(later, AmendState.SENT, ts[9], broker_ref="R3", **quiet)
    await store.confirm_amendment(later, 1.1000, ts[10], profit_lock=True, **quiet)
    await store.close_trade(t1, 1.1000, "stop", 1.5, ts[11], **quiet)
    await store.close_trade(t2, 1.0991, "stop", 0.6, ts[12], **quiet)
    await store.set_method(t4, "fixed+lock", "inconsistent_stages")
    await store.close_trade(t5, 1.0990, "stop", 0.5, ts[13], **quiet)
    await store.flush()


async def _run(
    url: str, max_batch: int, bad: bool = False, journal: Path | None = None
) -> tuple[tuple[list[Any], list[Any]], list[int], list[int]]:
    """The rows after ``_mixed``; the op counts of the commits and the group sizes run."""
    await _fresh(url)
    commits: list[int] = []
    groups: list[int] = []
    real_group = rows.execute_group

    async def counted_group(conn: Any, writes: Any) -> None:
        groups.append(len(writes))
        await real_group(conn, writes)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("traild.adapters.store.store.execute_group", counted_group)
        async with open_store(url, migrate=True, write_timeout=10, journal_dir=journal) as store:
            store._writer._max_batch = max_batch
            real_commit = store._writer._commit

            async def commit(ops: list[Any]) -> list[Any]:
                commits.append(len(ops))
                return await real_commit(ops)

            store._writer._commit = commit
            await _mixed(store, bad)
            if journal is not None:
                assert store.journal_statistics() is not None
                assert store.journal_statistics().pending == 0  # type: ignore[union-attr]
    return await _dump(url), commits, groups


async def test_a_batch_of_mixed_writes_leaves_the_rows_of_writing_them_one_by_one(
    db_url: str,
) -> None:
    with trio.fail_after(60):
        alone, alone_commits, _ = await _run(db_url, max_batch=1)
        batched, commits, groups = await _run(db_url, max_batch=256)
    assert batched == alone  # every column (SQLite: change_seq included)
    assert max(alone_commits) == 1
    assert max(commits) >= 6  # the mixed writes went in few transactions (one per lane) ...
    assert max(groups) >= 2  # ... with same-shaped ones as one statement
    trades, amendments = batched
    assert len(trades) == 5 and len(amendments) == 4
    states = await raw_sql(db_url, "SELECT state FROM stop_amendment ORDER BY id")
    assert [s for (s,) in states] == ["confirmed", "rejected", "confirmed", "confirmed"]


async def test_a_refused_write_fails_alone_and_the_rest_of_its_batch_lands(
    db_url: str, log_records: list[Any], tmp_path: Path
) -> None:
    with trio.fail_after(60):
        good, _, _ = await _run(db_url, max_batch=256)
        log_records.clear()
        refused, _, _ = await _run(db_url, max_batch=256, bad=True, journal=tmp_path / "j")
    failed = [r for r in log_records if r["extra"].get("event") == "store.write_failed"]
    assert len(failed) == 1 and "no stop_amendment row 999" in failed[0]["extra"]["error"]
    assert refused == good


async def test_the_journal_is_acknowledged_for_every_write_of_a_batch(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'traild.db'}"
    with trio.fail_after(60):
        async with open_store(url, migrate=True, journal_dir=tmp_path / "j") as store:
            added = [await store.add_trade(trade(f"J-{n}")) for n in range(3)]
            pending = store.journal_statistics()
            assert pending is not None and pending.pending == 0  # add_trade is not journaled
            amendments = []
            for t in added:
                assert t.id is not None
                amendments.append(
                    await store.write_amendment(t.id, t.deal_id, 1.099, None, "stage1", T0)
                )
            stats = store.journal_statistics()
            assert stats is not None and stats.pending == 0
            for n, (t, a) in enumerate(zip(added, amendments, strict=True)):
                assert t.id is not None
                await store.update_amendment(a, AmendState.SENT, T0, durable=False)
                await store.confirm_amendment(a, 1.099, T0, durable=False)
                await store.close_trade(t.id, 1.1, "tp", 1.0 + n, T0, durable=False)
            stats = store.journal_statistics()
            assert stats is not None and stats.pending == 9  # sent, confirmed, close x 3
            await store.flush()
            stats = store.journal_statistics()
            assert stats is not None and stats.pending == 0


async def test_writes_of_one_row_land_in_queue_order_within_a_batch(db_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True, write_timeout=10) as store:
            added = [await store.add_trade(trade(f"ORD-{n}")) for n in range(3)]
            a, b, c = (t.id for t in added)
            assert a is not None and b is not None and c is not None
            quiet = dict(durable=False)
            for n in range(1, 31):  # stops of three trades, interleaved with other shapes
                for trade_id in (a, b, c):
                    amendment = await store.write_amendment(
                        trade_id, "D", 1.0985 + n / 1e4, None, "stage3", T0, **quiet
                    )
                    await store.confirm_amendment(amendment, 1.0985 + n / 1e4, T0, **quiet)
                if n == 10:
                    await store.close_trade(b, 1.1, "tp", 1.0, T0, **quiet)
                    await store.set_status(c, "closed", "manual")
                    await store.close_trade(a, 1.2, "tp", 2.0, T0, **quiet)
            await store.flush()
        got = await raw_sql(
            db_url, "SELECT id, sl_price, status, change_seq FROM trade_log ORDER BY id"
        )
    assert [(r[0], round(r[1], 4), r[2]) for r in got] == [
        (a, 1.1015, "closed"),
        (b, 1.1015, "closed"),
        (c, 1.1015, "closed"),
    ]
    seq = {r[0]: r[3] for r in got}
    if make_url(db_url).get_backend_name() == "sqlite":
        assert seq[b] < seq[c] < seq[a]  # the closes were numbered in queue order
    else:  # numbered per transaction (migration 0007)
        assert seq[b] <= seq[c] <= seq[a]
