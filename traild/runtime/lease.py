"""The daemon's hold on its broker account's lease (issue #22): one owner per account.

``acquire`` waits as a standby while another traild holds a valid lease (``lease.waiting``)
and returns once this process owns it (``lease.acquired``, or ``lease.taken_over`` naming
the previous owner and token). ``run`` renews it every third of ``ttl``. Amendments may be
sent until ``deadline`` (trio time): a third of ``ttl`` before the lease could expire
unrenewed, counted from the moment the last successful claim or renewal was *asked*, so the
local deadline always falls before the database's expiry, by the margin, whatever the
database's latency. A renewal that fails (database away) is retried every tenth of ``ttl``;
past the deadline nothing is sent until one succeeds. A renewal that finds the lease taken,
or a write the store refuses by token, loses it for good (``lease.lost``, ``lost`` set).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio
from loguru import logger

from traild.core.errors import StoreError
from traild.core.lease import Claim, Instance, LeaseRow, Outcome
from traild.ports import Leases

RENEW_SHARE = 1 / 3  # renewed every third of the ttl ...
MARGIN_SHARE = 1 / 3  # ... and nothing is sent in the last third before it could expire
RETRY_SHARE = 1 / 10  # a failed renewal (or claim) is tried again this soon
MIN_POLL_S = 0.05
IDLE_SHARE = 1 / 3  # a frozen owner's open transaction is ended this soon (PostgreSQL) ...
MIN_IDLE_S = 1.0  # ... but never sooner than this (a busy daemon between two statements)


def idle_transaction_limit(ttl: float) -> float:
    """How long the database lets one of the daemon's transactions wait on the daemon (see
    ``make_engine``): a frozen owner's row locks delay a take-over by at most this."""
    return max(MIN_IDLE_S, ttl * IDLE_SHARE)


class LeaseKeeper:
    """One account's lease for one daemon."""

    def __init__(self, leases: Leases, account: str, me: Instance, ttl: float) -> None:
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"lease ttl must be a positive number of seconds, not {ttl!r}")
        self.leases = leases
        self.account = account
        self.me = me
        self.ttl = ttl
        self.token: int | None = None
        self.predecessor: int | None = None  # the token this tenure took over
        self.deadline = -math.inf  # trio time: amendments may be sent before it
        self.lost = trio.Event()
        self.on_renewed: Callable[[], None] | None = None  # e.g. wake the gateway's workers
        self._renew_at = math.inf
        self._failures = 0

    def may_send(self) -> bool:
        return trio.current_time() < self.deadline

    def send_deadline(self) -> float:
        return self.deadline

    async def acquire(self, waiting: Callable[[LeaseRow], None] | None = None) -> Claim:
        """Until this process owns the lease; ``waiting`` hears of each new holder."""
        holder: tuple[str, int] | None = None
        while True:
            asked = trio.current_time()
            try:
                claim = await self.leases.claim(self.account, self.me, self.ttl)
            except StoreError as exc:
                self._unavailable("claim", exc)
                await trio.sleep(max(MIN_POLL_S, self.ttl * RETRY_SHARE))
                continue
            self._failures = 0
            if claim.ours:
                self._granted(claim, asked)
                return claim
            row = claim.row
            if (row.owner, row.token) != holder:
                holder = (row.owner, row.token)
                logger.bind(
                    event="lease.waiting",
                    account=self.account,
                    owner=self.me.owner,
                    holder=row.owner,
                    fence=row.token,
                    expires_in=round(row.expires - claim.now, 3),
                ).info("standing by: the account's lease is held by {}", row.owner)
                if waiting is not None:
                    waiting(row)
            left = row.expires - claim.now
            await trio.sleep(min(max(MIN_POLL_S, left + 0.01), self.ttl * RENEW_SHARE))

    def _granted(self, claim: Claim, asked: float) -> None:
        row, previous = claim.row, claim.previous
        self.token = row.token
        self.predecessor = previous.token if previous is not None else row.token
        if claim.outcome is Outcome.ACQUIRED:
            self.predecessor = None
        self._extend(asked)
        record = logger.bind(
            event="lease.taken_over" if previous is not None else "lease.acquired",
            account=self.account,
            owner=self.me.owner,
            fence=row.token,
            ttl_s=self.ttl,
        )
        if previous is not None:
            record = record.bind(
                previous_owner=previous.owner,
                previous_fence=previous.token,
                expired_s_ago=round(claim.now - previous.expires, 3),
            )
            record.warning("lease taken over from {} (token {})", previous.owner, previous.token)
        else:
            record.info("lease of {} acquired (token {})", self.account, row.token)

    def _extend(self, asked: float) -> None:
        self.deadline = asked + self.ttl * (1 - MARGIN_SHARE)
        self._renew_at = asked + self.ttl * RENEW_SHARE
        if self.on_renewed is not None:
            self.on_renewed()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Renew until the lease is lost (then return) or the task is cancelled."""
        task_status.started()
        while not self.lost.is_set():
            await trio.sleep_until(self._renew_at)
            if self.lost.is_set() or self.token is None:
                return
            asked = trio.current_time()
            try:
                row = await self.leases.renew(self.account, self.me, self.token, self.ttl)
            except StoreError as exc:
                self._unavailable("renewal", exc)
                self._renew_at = trio.current_time() + max(MIN_POLL_S, self.ttl * RETRY_SHARE)
                continue
            if row is None:
                self.lose("taken")
                return
            if self._failures:
                logger.bind(event="lease.renewed", account=self.account, fence=row.token).info(
                    "lease renewed after {} failed attempt(s)", self._failures
                )
            self._failures = 0
            self._extend(asked)

    def lose(self, reason: str) -> None:
        """The lease is no longer ours (taken by another owner, or a write refused by
        token): nothing more is sent, ever, by this process."""
        if self.lost.is_set():
            return
        self.deadline = -math.inf
        self.lost.set()
        logger.bind(
            event="lease.lost",
            account=self.account,
            owner=self.me.owner,
            fence=self.token,
            reason=reason,
        ).error("lease of {} lost ({}): this daemon stops trading", self.account, reason)

    async def release(self) -> None:
        """A clean stop: end the lease now so a standby takes over at once."""
        if self.token is None or self.lost.is_set():
            return
        self.deadline = -math.inf
        try:
            await self.leases.release(self.account, self.me, self.token)
        except StoreError as exc:
            logger.bind(event="lease.release_failed", account=self.account, error=str(exc)).warning(
                "lease not released; a standby takes over when it expires"
            )
            return
        logger.bind(event="lease.released", account=self.account, fence=self.token).info(
            "lease released"
        )

    def _unavailable(self, what: str, exc: StoreError) -> None:
        self._failures += 1
        if self._failures % 10 == 1:  # the first, then every tenth
            logger.bind(
                event="lease.unavailable",
                account=self.account,
                attempt=self._failures,
                sending=self.may_send(),
                error=str(exc),
            ).warning("lease {} failed; retrying", what)
