"""The narrow interfaces between the runtime and the outside world, in core types only.

The runtime depends on these Protocols; adapters implement them; tests inject fakes through
constructors. Nothing here imports trio, SQLAlchemy or httpx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from traild.core.lease import Claim, Instance, LeaseRow
from traild.core.messages import (
    AlertRecord,
    AmendmentRecord,
    AmendState,
    Confirmation,
    OpenRefused,
    OpenRequest,
    Position,
    PositionAmended,
    PositionClosed,
    PositionOpened,
    StageRecalculation,
    Tick,
    TradeRecord,
)
from traild.core.overrides import ConfigOverride

TickSink = Callable[[Tick], Awaitable[None]]
BrokerEvent = PositionOpened | PositionClosed | OpenRefused | PositionAmended
EventSink = Callable[[BrokerEvent], Awaitable[None]]


class Broker(Protocol):
    """A broker account. Levels are traild prices; adapters scale them on the wire."""

    async def open_positions(self) -> list[Position]:
        """Every open position of the account."""
        ...

    async def get_position(self, deal_id: str) -> Position | None:
        """One position by deal id (None when it is no longer open). Used to reconcile."""
        ...

    async def amend_stop(self, deal_id: str, stop: float, limit: float | None) -> Confirmation:
        """Set the absolute stop of ``deal_id`` (re-sending ``limit``) and wait for the verdict.

        Raises BrokerTimeout (outcome unknown), BrokerUnavailable, RateLimited; a definitive
        refusal is returned as ``Confirmation(accepted=False, reason=...)``.
        """
        ...

    def submit_open(self, request: OpenRequest) -> str:
        """Register an order without waiting; its fill (or refusal) arrives as a broker event.
        Returns the deal id. Real brokers refuse: traild does not open positions there."""
        ...

    def min_stop_distance_pips(self, epic: str) -> float:
        """The dealing rule's minimum stop distance for ``epic`` (0 when unknown)."""
        ...

    def allowance_per_minute(self) -> int | None:
        """The account's trading request allowance, if the broker publishes one."""
        ...

    async def run(self, emit: EventSink) -> None:
        """Long-running: report opened/closed positions through ``emit`` until cancelled."""
        ...


@runtime_checkable
class PositionBook(Protocol):
    """A broker whose book traild itself keeps (the paper broker): it learns the trades handed
    over while it runs, through the same adoption path as a live broker's positions."""

    def knows(self, deal_id: str) -> bool:
        """The position is in the book."""
        ...

    def add_position(self, position: Position) -> None:
        """A position opened outside (handed over as open)."""
        ...


class Pacer(Protocol):
    """``acquire`` waits until one more amendment may go; ``pause`` holds all back a while."""

    async def acquire(self) -> None: ...

    def pause(self, seconds: float) -> None: ...


@runtime_checkable
class PacedBroker(Protocol):
    """A broker that paces its own amendments (None: not yet, e.g. its allowance is unknown)."""

    def pacer(self) -> Pacer | None: ...


class PriceFeed(Protocol):
    """A source of ticks."""

    def epics(self) -> list[str]:
        """The epics this feed quotes."""
        ...

    async def run(self, emit: TickSink) -> None:
        """Push ticks into ``emit`` (awaited: back-pressure) until exhausted or cancelled."""
        ...


# -- what some feeds can do besides quoting (checked with isinstance) ----------------------------
@runtime_checkable
class PreloadedFeed(Protocol):
    """A feed that can read all of its ticks up front (a replay: a bad file fails start-up)."""

    def load(self) -> None: ...


@runtime_checkable
class HoldableFeed(Protocol):
    """A feed that can wait while the consumer's backlog is high (an unpaced replay)."""

    held_s: float  # how long it waited, in all (a statistic)

    def hold_while(self, backlog: Callable[[], int]) -> None: ...


@runtime_checkable
class EpicFollowingFeed(Protocol):
    """A live feed that subscribes more epics while it runs (IG: PRICE items)."""

    def add_epics(self, epics: Iterable[str]) -> None: ...


@runtime_checkable
class MarketHours(Protocol):
    """A feed that knows whether a market is open for dealing (IG: DLG_FLAG)."""

    def market_open(self, epic: str) -> bool: ...


@runtime_checkable
class TickListener(Protocol):
    """A broker that fills and closes on ticks itself (the paper broker): the events each
    tick causes are handed to the supervisor before the tick reaches the actors."""

    def on_tick(self, tick: Tick) -> list[BrokerEvent]: ...


class TradeStore(Protocol):
    """Durable state: trade_log, alert_history and the stop_amendment write-ahead log.

    Every method is safe to call from many trio tasks; one owner task serialises the writes.
    """

    async def load_open_trades(self) -> list[TradeRecord]:
        """Trades with status pending or open (corrupt stage JSON is returned as None + logged)."""
        ...

    async def changed_trades(
        self, after: int, limit: int = 1000, open_only: bool = False
    ) -> tuple[list[TradeRecord], int]:
        """Trades inserted, or whose status, override or entry changed, since change ``after``
        (a sequence the database keeps), oldest change first, at most ``limit`` (``open_only``:
        only open and pending ones); and the highest change read (``after`` when none): the
        poll's high-water mark."""
        ...

    async def trades_by_deals(self, deal_ids: Sequence[str]) -> dict[str, TradeRecord]:
        """The trades of these deal ids that exist (one read for many positions)."""
        ...

    async def get_alerts(self, alert_ids: Sequence[int]) -> dict[int, AlertRecord]:
        """The alerts of these ids that exist."""
        ...

    async def get_trade(self, trade_id: int) -> TradeRecord | None: ...

    async def get_trade_by_deal(self, deal_id: str) -> TradeRecord | None: ...

    async def get_alert(self, alert_id: int) -> AlertRecord | None: ...

    async def add_trade(self, trade: TradeRecord) -> TradeRecord:
        """Insert a trade_log row; returns it with its id."""
        ...

    async def add_alert(self, alert: AlertRecord) -> AlertRecord: ...

    async def adopt_trade(self, trade_id: int, **fields: Any) -> None:
        """Record adoption: fill/entry fields, conditions, calculated stages, method, reason."""
        ...

    async def adopt_trades(self, updates: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Many adoptions in one write; WriteQueued when not durable in time (still queued)."""
        ...

    async def save_progress(self, trade_id: int, best_price: float, durable: bool = True) -> None:
        """Persist the trade's best price (MFE) so a restart resumes exactly."""
        ...

    async def save_progress_many(
        self, prices: Sequence[tuple[int, float]], durable: bool = True
    ) -> None:
        """Persist many best prices (trade id, price) at once; last value per trade wins."""
        ...

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
        """Write-ahead: insert a ``pending`` amendment before it is sent; returns its id.

        Amendment records are written ahead of every other kind of write; with
        ``durable=False`` the call returns once the record is queued (in order)."""
        ...

    async def update_amendment(
        self,
        amendment_id: int,
        state: AmendState,
        ts: datetime,
        broker_ref: str | None = None,
        error: str | None = None,
        durable: bool = True,
    ) -> None: ...

    async def confirm_amendment(
        self,
        amendment_id: int,
        level: float,
        ts: datetime,
        profit_lock: bool = False,
        durable: bool = True,
    ) -> None:
        """Atomically mark the amendment confirmed and set the trade's ``sl_price``."""
        ...

    async def unfinished_amendments(self) -> list[AmendmentRecord]:
        """Every amendment not in a final state (for recovery after a crash)."""
        ...

    async def close_trade(
        self,
        trade_id: int,
        exit_price: float,
        exit_reason: str,
        pnl_pips: float,
        closed_at: datetime,
        durable: bool = True,
    ) -> None: ...

    async def set_status(self, trade_id: int, status: str, reason: str | None = None) -> None: ...

    async def set_method(self, trade_id: int, method: str, fallback_reason: str | None) -> None:
        """Record a switch of calculation method (e.g. fallback to fixed)."""
        ...

    async def trades_since(self, since: datetime | None) -> list[TradeRecord]:
        """Trades opened at/after ``since`` (all when None), for ``traild report``."""
        ...

    async def record_recalculation(self, rec: StageRecalculation) -> None:
        """Append a real-time stage recalculation (history) and make its stages the trade's
        current ``calculated_stages``, atomically."""
        ...


class ConfigSource(Protocol):
    """Configuration overrides kept in the database (``traild config set``)."""

    async def config_version(self) -> int:
        """A number that grows with every change (cheap: polled every interval)."""
        ...

    async def config_overrides(self) -> tuple[int, list[ConfigOverride]]:
        """The version and every override, read together."""
        ...


@runtime_checkable
class Journaled(Protocol):
    """A store with a local write-ahead journal (the SQL store, in the daemon)."""

    pending_on_close: int  # journal records the database had not taken when it closed

    def journal_statistics(self) -> Any:
        """Pending records, size and age of the oldest (None without a journal)."""
        ...


class WriteStatistics(Protocol):
    """A store's write queue, for heartbeats and back-pressure."""

    @property
    def queued_writes(self) -> int: ...

    @property
    def retries(self) -> int: ...


@runtime_checkable
class StoreWithStatistics(Protocol):
    """A store with a write queue (the SQL store)."""

    def statistics(self) -> WriteStatistics: ...


@runtime_checkable
class FlushableStore(Protocol):
    """A store that can wait until the database has every queued write."""

    async def flush(self) -> None: ...


@runtime_checkable
class RecalculationHistory(Protocol):
    """A store that keeps the real-time recalculations (the SQL store does): a replay
    restarted from its beginning re-trails a recalculated trade from the stages it had first."""

    async def recalculations_since(self, since: datetime | None) -> list[StageRecalculation]: ...


@runtime_checkable
class ConfigBacked(Protocol):
    """A store that also keeps configuration overrides (the SQL store does)."""

    def config_store(self) -> ConfigSource: ...


class Leases(Protocol):
    """One owner per broker account (``core/lease.py``); times on the database's clock.
    Every call is bounded in time and raises StoreError when the database does not answer."""

    async def claim(self, account: str, me: Instance, ttl: float) -> Claim:
        """Take the account's lease if free, expired, ours, or our crashed run's; else HELD."""
        ...

    async def renew(self, account: str, me: Instance, token: int, ttl: float) -> LeaseRow | None:
        """Extend our lease by ``ttl`` from now; None when another owner has it."""
        ...

    async def release(self, account: str, me: Instance, token: int) -> None:
        """End our lease now (a clean stop)."""
        ...


@runtime_checkable
class LeaseBacked(Protocol):
    """A store that keeps account leases and fences its writes with them (the SQL store)."""

    def leases(self) -> Leases: ...

    async def fence(
        self,
        account: str,
        token: int,
        predecessor: int | None,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        """Every later write carries ``token``; the database refuses it once superseded."""
        ...

    async def open_journal(self, directory: Path) -> None:
        """Open the write-ahead journal (after ``fence``: its records carry the token)."""
        ...
