"""The one exception tree of traild.

    TraildError
     ├── ConfigError            invalid settings (every bad key listed)
     ├── UsageError             a bad command-line argument or combination (the CLI exits 2)
     ├── InstrumentError        an epic that resolves to no instrument
     ├── DataError              an unreadable or malformed input file
     ├── StageError             stages that cannot be computed or are inconsistent
     ├── StoreError             the database failed or is out of date
     │    ├── WriteQueued       not durable in time: the write stays queued and lands later
     │    ├── SchemaOutOfDate   the schema is behind head: run `traild migrate`
     │    └── FencedWrite       a write under a lease token another owner has superseded
     └── BrokerError            the broker did not do what was asked
          ├── BrokerRejected    a definitive "no" (e.g. stop too close); do not retry blindly
          │    └── BrokerConfigRefused  the broker refuses traild's configuration (credentials,
          │                         API key, account, protocol version): a restart cannot fix it
          ├── BrokerTimeout     outcome unknown: re-read the position before retrying
          ├── BrokerUnavailable transient (5xx, connection); retry with backoff
          └── RateLimited       allowance exceeded; back off

Messages are meant for operators: one line, the offending value, never a secret.
"""

from __future__ import annotations


class TraildError(Exception):
    """Base of every error traild raises on purpose."""


class ConfigError(TraildError):
    """Settings failed validation; ``problems`` lists ``key.path: message`` entries."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = list(problems)
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}: " + "; ".join(self.problems))


class UsageError(TraildError):
    """An argument the caller gave is malformed, unknown or inconsistent with another one
    (found after argparse: a ``--grid`` key, a variant name, a ``config set`` assignment)."""


class InstrumentError(TraildError):
    """An epic or symbol that maps to no known instrument."""


class DataError(TraildError):
    """An input file that cannot be read or parsed."""


class StageError(TraildError):
    """Stage configuration that cannot be used."""


class StoreError(TraildError):
    """Persistence failed."""


class WriteQueued(StoreError):
    """Not durable within the timeout: the write stays queued and lands when the database can.

    ``amendment_id`` carries the id the store already allocated, so the caller can still refer to
    the amendment (e.g. mark it failed once the database is back) instead of losing track of it.
    """

    def __init__(self, amendment_id: int | None = None) -> None:
        super().__init__("database unavailable; write queued")
        self.amendment_id = amendment_id


class SchemaOutOfDate(StoreError):
    """The database schema is older than this traild; run ``traild migrate``."""


class FencedWrite(StoreError):
    """A write carrying a lease token older than the account's current one: another traild
    owns the account now, and this write is refused for good (never retried)."""


class BrokerError(TraildError):
    """The broker refused or failed a request."""


class BrokerRejected(BrokerError):
    """The broker answered with a definitive rejection (reason in the message)."""


class BrokerConfigRefused(BrokerRejected):
    """The broker refuses what traild is configured with (credentials, API key, account,
    streaming protocol): retrying, or restarting, only repeats the refusal (and IG locks an
    account after repeated failed logins). ``traild run`` exits 78 on it."""


class BrokerTimeout(BrokerError):
    """No answer in time: the request may or may not have been applied."""


class BrokerUnavailable(BrokerError):
    """A transient broker failure (5xx, connection reset); safe to retry later."""


class RateLimited(BrokerError):
    """The broker's request allowance is exhausted."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
