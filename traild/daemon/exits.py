"""How a run ends: the account's lease handed on after a clean stop, and the exit code."""

from __future__ import annotations

from loguru import logger

from traild.core.errors import TraildError
from traild.ports import FlushableStore, Journaled, TradeStore
from traild.runtime.lease import LeaseKeeper

EXIT_OK = 0
EXIT_REFUSED = 78  # deliberate refusal to start (config or schema): systemd must not restart
# stopped with records in the journal the database has not taken, or with the account's lease
# lost to another traild (EX_TEMPFAIL: systemd restarts it, as a standby)
EXIT_PENDING = 75


async def hand_on(keeper: LeaseKeeper | None, store: TradeStore) -> None:
    """A clean stop hands the lease on at once, once the database has every write (else it
    expires: the journal keeps what is left for this home's next run)."""
    if keeper is None or keeper.lost.is_set():
        return
    if isinstance(store, FlushableStore):
        try:
            await store.flush()
        except TraildError:
            return
    await keeper.release()


def exit_code(store: TradeStore, lease: LeaseKeeper | None) -> int:
    """0, or EXIT_PENDING when the journal holds records the database has not taken (they
    are applied at the next start: nothing is lost, but the database is behind) or the
    lease was lost (restarted by systemd, the daemon stands by)."""
    pending = store.pending_on_close if isinstance(store, Journaled) else 0
    lost = lease is not None and lease.lost.is_set()
    if lost:
        logger.bind(
            event="daemon.stopped", exit=EXIT_PENDING, reason="lease_lost",
            journal_pending=pending,
        ).error("stopped: another traild owns the account now")  # fmt: skip
        return EXIT_PENDING
    if not pending:
        return EXIT_OK
    logger.bind(event="daemon.stopped", exit=EXIT_PENDING, journal_pending=pending).error(
        "stopped with {} record(s) waiting in the journal for the database", pending
    )
    return EXIT_PENDING
