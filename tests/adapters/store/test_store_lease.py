"""Account leases and fencing tokens on the real databases, SQLite and PostgreSQL (issue #22):
claim, renew, expire, take over; a zombie owner's writes refused by token; journal records of
an older tenure not applied."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.adapters.store.store_helpers import T0, raw_sql, trade
from tests.adapters.store.test_store_journal import _queue_a_trades_life
from traild.adapters.store import SqlTradeStore, migrate_database, open_store
from traild.adapters.store.journal import read_journal
from traild.core.errors import StoreError
from traild.core.lease import Instance, Outcome
from traild.core.messages import AmendState

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
A = Instance("hostA:100:2024-05-01T00:00:00Z", "hostA:aaaa", 100)
B = Instance("hostB:200:2024-05-01T00:00:01Z", "hostB:bbbb", 200)
TTL = 30.0


async def _expire(url: str, account: str = "paper") -> None:
    """The holder stopped renewing long ago (no wall-clock wait: the row says so)."""
    await raw_sql(url, f"UPDATE traild_lease SET expires_at = 0 WHERE account = '{account}'")


async def test_claim_renew_expire_and_take_over_with_the_next_token(
    store: SqlTradeStore, db_url: str
) -> None:
    leases = store.leases()
    with trio.fail_after(30):
        first = await leases.claim("paper", A, TTL)
        assert first.outcome is Outcome.ACQUIRED and first.row.token == 1
        assert first.row.expires == pytest.approx(first.now + TTL)
        held = await leases.claim("paper", B, TTL)
        assert held.outcome is Outcome.HELD and held.row.owner == A.owner
        renewed = await leases.renew("paper", A, 1, TTL)
        assert renewed is not None and renewed.expires >= first.row.expires
        await _expire(db_url)
        taken = await leases.claim("paper", B, TTL)
        assert taken.outcome is Outcome.TAKEN_OVER and taken.row.token == 2
        assert taken.previous is not None and taken.previous.owner == A.owner
        assert await leases.renew("paper", A, 1, TTL) is None  # the old owner lost it
        await leases.release("paper", A, 1)  # a stale release changes nothing
        assert (await leases.claim("paper", A, TTL)).outcome is Outcome.HELD
        await leases.release("paper", B, 2)
        back = await leases.claim("paper", A, TTL)
        assert back.outcome is Outcome.TAKEN_OVER and back.row.token == 3
        now, rows = await leases.leases()
    assert [(r.account, r.owner, r.token) for r in rows] == [("paper", A.owner, 3)]
    assert rows[0].expires > now


async def test_two_accounts_are_owned_by_two_daemons(store: SqlTradeStore) -> None:
    leases = store.leases()
    with trio.fail_after(30):
        a = await leases.claim("ig:ACC1", A, TTL)
        b = await leases.claim("ig:ACC2", B, TTL)
        assert (await leases.claim("ig:ACC1", B, TTL)).outcome is Outcome.HELD
    assert a.ours and b.ours and {a.row.owner, b.row.owner} == {A.owner, B.owner}


async def test_a_zombie_owners_writes_are_refused_by_token_after_a_take_over(
    db_url: str, log_records: list[Any]
) -> None:
    refused: list[str] = []
    with trio.fail_after(60):
        await migrate_database(db_url)
        async with (
            open_store(db_url, write_timeout=10) as zombie,
            open_store(db_url, write_timeout=10) as successor,
        ):
            added = await zombie.add_trade(trade())
            assert added.id is not None
            claim = await zombie.leases().claim("paper", A, TTL)
            await zombie.fence("paper", claim.row.token, None, lambda: refused.append("A"))
            first = await zombie.write_amendment(added.id, "DEAL-1", 1.0990, 1.0985, "early_be", T0)
            await _expire(db_url)  # A was paused past its ttl ...
            took = await successor.leases().claim("paper", B, TTL)  # ... and B took over
            await successor.fence("paper", took.row.token, took.row.token - 1)
            # A wakes up and writes on as if it still owned the account:
            with pytest.raises(StoreError, match="token"):
                await zombie.confirm_amendment(first, 1.0990, T0)
            with pytest.raises(StoreError, match="token"):
                await zombie.adopt_trade(added.id, sl_price=1.2)
            with pytest.raises(StoreError, match="token"):
                await zombie.close_trade(added.id, 1.0, "stop", -10.0, T0)
            with pytest.raises(StoreError, match="token"):
                await zombie.write_amendment(added.id, "DEAL-1", 1.2, 1.0985, "stage1", T0)
            # ... while B's land, stamped with B's token
            second = await successor.write_amendment(
                added.id, "DEAL-1", 1.0995, 1.0985, "stage1", T0
            )
            await successor.confirm_amendment(second, 1.0995, T0)
            stored = await successor.get_trade(added.id)
            amendments = await successor.amendments_of(added.id)
        tokens = await raw_sql(db_url, "SELECT id, lease_token FROM stop_amendment ORDER BY id")
    assert stored is not None and stored.sl_price == 1.0995 and stored.status.value == "open"
    assert [(a.id, a.state) for a in amendments] == [
        (first, AmendState.PENDING),
        (second, AmendState.CONFIRMED),
    ]
    assert tokens == [(first, 1), (second, 2)]
    assert refused  # the zombie's owner heard of it (the daemon: lease.lost)
    events = [r["extra"].get("event") for r in log_records]
    assert events.count("store.fenced") == 1  # once, however many writes were refused


async def _journal_of_a_crashed_owner(tmp_path: Path) -> tuple[str, Path, int]:
    """A SQLite database whose owner (token 1) crashed with a trade's life in its journal."""
    path, journal = tmp_path / "traild.db", tmp_path / "journal"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate_database(url)
    async with open_store(url) as plain:
        added = await plain.add_trade(trade())
        claim = await plain.leases().claim("paper", A, TTL)
    assert added.id is not None and claim.row.token == 1
    with closing(sqlite3.connect(path, isolation_level=None)) as locker:
        locker.execute("BEGIN EXCLUSIVE")
        async with open_store(url, busy_timeout=0.05, drain_timeout=0.5) as store:
            await store.fence("paper", 1, None)
            await store.open_journal(journal)
            await _queue_a_trades_life(store, added.id)
        assert store.pending_on_close == 5
        locker.execute("ROLLBACK")
    return url, journal, added.id


async def test_the_journal_of_this_homes_crashed_run_is_applied_by_its_successor(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        url, journal, trade_id = await _journal_of_a_crashed_owner(tmp_path)
        async with open_store(url) as store:
            await _expire(url)
            took = await store.leases().claim("paper", Instance("hostA:101:x", A.home, -1), TTL)
            assert took.row.token == 2
            await store.fence("paper", 2, 1)
            await store.open_journal(journal)
            stored = await store.get_trade(trade_id)
    assert stored is not None and stored.status.value == "closed"
    assert read_journal(journal).pending == []


async def test_journal_records_of_an_older_tenure_are_not_applied(
    tmp_path: Path, log_records: list[Any]
) -> None:
    with trio.fail_after(60):
        url, journal, trade_id = await _journal_of_a_crashed_owner(tmp_path)
        async with open_store(url) as store:
            leases = store.leases()
            await _expire(url)
            assert (await leases.claim("paper", B, TTL)).row.token == 2  # another owner ...
            await _expire(url)
            assert (await leases.claim("paper", A, TTL)).row.token == 3  # ... then A again
            await store.fence("paper", 3, 2)
            await store.open_journal(journal)
            stored = await store.get_trade(trade_id)
            amendments = await store.amendments_of(trade_id)
    assert stored is not None and stored.status.value == "open" and amendments == []
    assert read_journal(journal).pending == []  # acknowledged: never tried again
    fenced = [r["extra"] for r in log_records if r["extra"].get("event") == "journal.fenced"]
    assert fenced and fenced[0]["records"] == 5


def test_fenced_writes_keep_their_row_statements_so_they_group_as_before() -> None:
    from traild.adapters.store.lease import Fence
    from traild.adapters.store.models import TRADE_LOG
    from traild.adapters.store.rows import plan, update_one

    fence = Fence()
    fence.hold("paper", 4, 3)
    ops = [fence.wrap(update_one(TRADE_LOG, i, {"best_price": 1.1 + i / 1e4})) for i in range(50)]
    steps = plan(ops)
    assert len(steps) == 1 and len(steps[0].items) == 50  # one executemany, fenced or not


async def test_a_zombie_paused_inside_its_write_transaction_does_not_block_the_take_over(
    pg_database: str,
) -> None:
    """PostgreSQL: an owner frozen (SIGSTOP, a paused VM) between the token check ``FOR SHARE``
    and its commit keeps its connection open, so its row lock would outlive the lease and
    every claim would wait on it for ever. The daemon's sessions end such a transaction
    (``idle_in_transaction_session_timeout``): the successor takes over once the lease
    expired, and the frozen write is refused when it wakes up."""
    import asyncio

    import sqlalchemy as sa

    from tests.adapters.store.store_helpers import pg_execute, pg_url
    from traild.adapters.store.aio import on_loop
    from traild.adapters.store.engine import transaction
    from traild.adapters.store.lease import current_token

    reset = ("DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    await trio.to_thread.run_sync(pg_execute, pg_database, reset)
    url = pg_url(pg_database)
    await migrate_database(url)
    frozen = trio.Event()
    woken: list[asyncio.Event] = []
    woke: list[BaseException] = []
    async with (
        open_store(url, write_timeout=10, idle_in_transaction_timeout=0.5) as zombie,
        open_store(url, write_timeout=10) as successor,
    ):
        added = await zombie.add_trade(trade())
        assert added.id is not None
        first = await zombie.leases().claim("paper", A, 0.5)
        assert first.outcome is Outcome.ACQUIRED
        await zombie.fence("paper", first.row.token, None)

        async def token_read_then_frozen(engine: Any) -> None:
            woken.append(asyncio.Event())
            async with transaction(engine) as conn:
                assert await current_token(conn, "paper") == 1
                trio_token.run_sync_soon(frozen.set)
                await woken[0].wait()  # the process stopped here, its socket still open
                await conn.execute(sa.text("SELECT 1"))  # ... and goes on with its write

        async def zombie_writer() -> None:
            try:
                await on_loop(zombie._loop, token_read_then_frozen, zombie._engine)
            except Exception as exc:  # its session was ended under it
                woke.append(exc)

        trio_token = trio.lowlevel.current_trio_token()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(zombie_writer)
                await frozen.wait()
                await _expire(url)
                taken = await _claim_retrying(successor, B)  # blocked until the lock goes
                woken[0].set()
            # the zombie wakes up: its transaction is gone, and its next write (on a fresh
            # connection from the pool) is refused by token, not retried for ever
            with pytest.raises(StoreError, match="token"):
                await zombie.adopt_trade(added.id, sl_price=1.2)
    assert taken.outcome is Outcome.TAKEN_OVER and taken.row.token == 2
    assert taken.previous is not None and taken.previous.owner == A.owner
    assert len(woke) == 1, "the frozen transaction must not have committed"


async def _claim_retrying(store: SqlTradeStore, me: Instance) -> Any:
    """One claim; a StoreError (the row locked past the call's bound) is tried again."""
    while True:
        try:
            return await store.leases().claim("paper", me, TTL)
        except StoreError:
            await trio.sleep(0.1)


async def test_a_daemon_reads_polls_and_settles_only_its_accounts_trades(db_url: str) -> None:
    """Two broker accounts on one database (migration 0009): once fenced for ``ig:A`` the
    store adopts, polls and settles the trades of ``ig:A`` and those with no account, never
    those of ``ig:B``; the trades it adds carry ``ig:A``. The command line (unfenced) sees all."""
    with trio.fail_after(60):
        await migrate_database(db_url)
        async with open_store(db_url, write_timeout=10) as cli:
            ids = {}
            for deal, account in (("MINE", "ig:A"), ("NOBODYS", None), ("THEIRS", "ig:B")):
                added = await cli.add_trade(trade(deal))
                assert added.id is not None
                ids[deal] = added.id
                if account is not None:
                    await raw_sql(
                        db_url,
                        f"UPDATE trade_log SET account = '{account}' WHERE id = {added.id}",
                    )
                await cli.write_amendment(added.id, deal, 1.0990, 1.0985, "early_be", T0)
        async with open_store(db_url, write_timeout=10) as daemon:
            claim = await daemon.leases().claim("ig:A", A, TTL)
            await daemon.fence("ig:A", claim.row.token, None)
            open_deals = {t.deal_id for t in await daemon.load_open_trades()}
            polled, _ = await daemon.changed_trades(0, open_only=True)
            unfinished = {a.trade_id for a in await daemon.unfinished_amendments()}
            own = await daemon.add_trade(trade("OPENED-HERE"))
            everything = {t.deal_id for t in await daemon.trades_since(None)}
        stamped = await raw_sql(db_url, f"SELECT account FROM trade_log WHERE id = {own.id}")
        async with open_store(db_url, write_timeout=10) as cli:
            all_open = {t.deal_id for t in await cli.load_open_trades()}
    assert open_deals == {"MINE", "NOBODYS"}
    assert {t.deal_id for t in polled} == {"MINE", "NOBODYS"}
    assert unfinished == {ids["MINE"], ids["NOBODYS"]}
    assert stamped == [("ig:A",)]
    assert "THEIRS" in everything  # reports read every trade
    assert all_open == {"MINE", "NOBODYS", "THEIRS", "OPENED-HERE"}
