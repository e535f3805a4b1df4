"""One owner per broker account: the lease's rules, as pure functions (issue #22).

A lease row says who owns an account (``owner``: host, pid and start time of one traild
process), since when, until when (``expires``, in seconds on the database's clock) and under
which fencing ``token``. The token grows by one on every change of owner and never otherwise;
every trade-changing write carries the token its writer held, and the store refuses a write
whose token is older than the row's. ``claim`` decides, on the row as read inside the claiming
transaction, whether ``me`` may have the lease; the store writes its answer with a conditional
update in that same transaction. The in-memory fake of the tests runs the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Instance:
    """One traild process: ``owner`` is shown in logs (``host:pid:start``); ``home`` names its
    host and state directory (so its journal): a holder with the same home whose process is
    gone is this daemon's own previous run, crashed, and is replaced at once."""

    owner: str
    home: str
    pid: int


@dataclass(frozen=True, slots=True)
class LeaseRow:
    account: str
    owner: str
    home: str
    pid: int
    token: int
    acquired: float  # database clock, seconds since the epoch
    expires: float


class Outcome(StrEnum):
    ACQUIRED = "acquired"  # the account had no lease yet
    RENEWED = "renewed"  # ours already (same process)
    TAKEN_OVER = "taken_over"  # another owner's lease had expired (or its process is gone)
    HELD = "held"  # another owner holds a valid lease


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: Outcome
    row: LeaseRow  # the row after the claim (the holder's when HELD)
    now: float  # the database's clock at the claim
    previous: LeaseRow | None = None  # the row replaced by a take-over

    @property
    def ours(self) -> bool:
        return self.outcome is not Outcome.HELD


def claim(
    row: LeaseRow | None,
    account: str,
    me: Instance,
    now: float,
    ttl: float,
    holder_gone: bool = False,
) -> Claim:
    """What claiming ``account`` at ``now`` gives ``me``. ``holder_gone``: the holder shares
    our home and its process no longer exists (checked by the caller, which can ask the OS)."""
    if row is None:
        new = LeaseRow(account, me.owner, me.home, me.pid, 1, now, now + ttl)
        return Claim(Outcome.ACQUIRED, new, now)
    if row.owner == me.owner:
        return Claim(Outcome.RENEWED, replace(row, expires=max(row.expires, now + ttl)), now)
    if row.expires <= now or (holder_gone and row.home == me.home):
        new = LeaseRow(account, me.owner, me.home, me.pid, row.token + 1, now, now + ttl)
        return Claim(Outcome.TAKEN_OVER, new, now, previous=row)
    return Claim(Outcome.HELD, row, now)


def renewable(row: LeaseRow | None, me: Instance, token: int) -> bool:
    """A renewal keeps the lease only while nobody took it: same owner, same token (an
    expired lease nobody claimed is renewed: no one else can have written meanwhile)."""
    return row is not None and row.owner == me.owner and row.token == token


def replayable(record_token: int | None, token: int, predecessor: int | None) -> bool:
    """May a journal record written under ``record_token`` be applied by the owner of
    ``token``, who took the lease over from ``predecessor``? Only records of this tenure, or
    of the tenure right before it (this home's previous run: the journal is per home, so a
    predecessor token found in it is its own); a record older than that could land over a
    later owner's writes. A record without a token predates leases."""
    return record_token is None or record_token in (token, predecessor)
