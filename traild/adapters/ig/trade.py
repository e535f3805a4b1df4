"""IG position events: the ``TRADE:{accountId}`` stream first, a slow REST reconciliation behind.

OPU (open position updates) tells openings (status OPEN), stop/limit changes (UPDATED) and
closings (DELETED) as they happen; CONFIRMS carries the verdict of every deal reference, so an
amendment rarely needs ``GET /confirms``. ``GET /positions`` is read at start and then every
``reconcile_interval`` (minutes) as the safety net for anything the stream missed. Without the
stream (``use_stream = False``) positions are polled every ``poll_interval`` as before.
A deal missing from a poll is checked alone; only its own 404 closes it.

It works on ``positions.IGPositions`` (the reads and what is kept per deal; a closed deal is
forgotten there), never on the broker that owns it: the broker composes it, not the other way
round. The TRADE item rides on the account's one Lightstreamer session (``IGBroker.stream``).
Its reader never waits: a CONFIRMS is recorded at once (a waiting amendment wakes), an OPU is
handed to its deal's lane (``lanes.KeyedLanes``): a new position waiting for the store or for
``/markets`` holds up that deal only, never the confirmations or another deal's close. A full
backlog drops the OPU, logs ``broker.trade_backlog`` and reconciles from ``GET /positions``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import trio
from loguru import logger

from traild.adapters.ig.lanes import KeyedLanes
from traild.adapters.ig.lightstreamer import LightstreamerClient
from traild.adapters.ig.options import IGEvents
from traild.adapters.ig.positions import IGPositions, keep_newest
from traild.adapters.ig.tlcp import TRADE_FIELDS, ItemUpdate, Subscription
from traild.adapters.ig.wire import (
    PositionUpdate,
    classify_exit,
    ig_time,
    parse_json_field,
    parse_opu,
)
from traild.core.errors import BrokerConfigRefused, BrokerError, InstrumentError, RateLimited
from traild.core.instruments import Instrument
from traild.core.messages import (
    Direction,
    Position,
    PositionAmended,
    PositionClosed,
    PositionOpened,
)
from traild.ports import BrokerEvent, EventSink

_CONFIRMS_KEPT = 500  # pushed confirmations remembered (an amendment waits for its own)


class TradeEvents:
    """Turns IG's TRADE stream and position reads into PositionOpened / PositionClosed."""

    def __init__(
        self,
        positions: IGPositions,
        stream: LightstreamerClient,
        options: IGEvents,
        clock: Callable[[], datetime],
    ) -> None:
        self._book = positions
        self._markets = positions.markets
        self._stream = stream
        self._clock = clock
        self._poll = options.poll_interval
        self._reconcile_every = options.reconcile_interval
        self.use_stream = options.use_stream
        self.live = False
        self._was_live = self.resync = False
        self._resync_asked = 0  # how many times a reconciliation was asked for
        self.known: dict[str, Position] = {}
        self._emit: EventSink | None = None
        self._confirms: dict[str, Mapping[str, Any]] = {}
        self._waiting: dict[str, trio.Event] = {}
        self._lanes = KeyedLanes()
        self._backlogged = False
        self.counts = dict.fromkeys(("opu", "confirms", "polls", "dropped"), 0)

    def subscribe(self) -> None:
        """Add ``TRADE:{accountId}`` to the account's stream (after login: the id is known)."""
        if self.use_stream:
            item = f"TRADE:{self._book.session.account_id or ''}"
            sub = Subscription("TRADE", item, TRADE_FIELDS, "DISTINCT")
            self._stream.add(sub, self._on_trade, self._on_state)

    # -- running ---------------------------------------------------------------------------
    async def run(self, emit: EventSink) -> None:
        self._emit = emit
        if not self.use_stream:
            await self._poll_forever(self._poll)
            return
        async with trio.open_nursery() as nursery:
            await nursery.start(self._lanes.run)
            nursery.start_soon(self._stream.run)
            await self._poll_forever(self._reconcile_every)

    def _interval(self, interval: float) -> float:
        """The slow reconciliation while the stream is live; the poll interval while it is
        down (then the stream's events are missing and polling is the only source)."""
        return interval if self.live or not self.use_stream else min(interval, self._poll)

    def _on_state(self, live: bool) -> None:
        if live and not self.live and self._was_live:
            self._ask_resync()  # back after an outage: reconcile now, not in minutes
        self._was_live = self._was_live or live
        self.live = live

    def _ask_resync(self) -> None:
        self.resync = True
        self._resync_asked += 1

    async def _poll_forever(self, interval: float) -> None:
        while True:
            wait = self._interval(interval)
            asked = self._resync_asked
            try:
                positions = await self._book.open_positions()
            except BrokerConfigRefused:
                raise  # credentials refused mid-run: the daemon ends (exit 78)
            except BrokerError as exc:
                if isinstance(exc, RateLimited):
                    wait = max(min(wait, 60.0), exc.retry_after)
                logger.bind(event="broker.poll_failed", error=type(exc).__name__).warning(
                    "IG position poll failed: {}", exc
                )
            else:
                self.counts["polls"] += 1
                if asked == self._resync_asked:  # asked during this poll: one more, at once
                    self.resync = False
                await self._reconcile(positions)
            await self._pause(wait)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, cut short to the poll interval if the stream goes down."""
        start = trio.current_time()
        deadline = start + seconds
        while (now := trio.current_time()) < deadline:
            await trio.sleep(min(deadline - now, self._poll))
            if self.resync:
                return
            if self.use_stream and not self.live:
                deadline = min(deadline, start + self._poll)

    async def _send(self, event: BrokerEvent) -> None:
        assert self._emit is not None
        await self._emit(event)

    # -- confirmations ---------------------------------------------------------------------
    async def wait_confirm(self, reference: str, seconds: float) -> Mapping[str, Any] | None:
        """The CONFIRMS payload of ``reference`` if the live stream brings it in time."""
        if not self.live:
            return None
        if reference not in self._confirms:
            event = self._waiting.setdefault(reference, trio.Event())
            with trio.move_on_after(seconds):
                await event.wait()
            self._waiting.pop(reference, None)
        return self._confirms.get(reference)

    def _on_confirm(self, data: Mapping[str, Any]) -> None:
        reference = str(data.get("dealReference") or "")
        if not reference:
            return
        self.counts["confirms"] += 1
        self._confirms[reference] = data
        keep_newest(self._confirms, _CONFIRMS_KEPT)
        waiter = self._waiting.get(reference)
        if waiter is not None:
            waiter.set()

    # -- the TRADE stream ------------------------------------------------------------------
    async def _on_trade(self, item: ItemUpdate) -> None:
        """The reader's part: never waits (see the module docstring)."""
        before = item.before or {}
        for name in ("CONFIRMS", "OPU"):
            value = item.values.get(name)
            if value is None or value == before.get(name):
                continue  # DISTINCT: an unchanged field repeats the previous event
            data = parse_json_field(value)
            if data is None:
                continue
            if name == "CONFIRMS":
                self._on_confirm(data)
            else:
                self._hand_off(data)

    def _hand_off(self, data: Mapping[str, Any]) -> None:
        deal_id = str(data.get("dealId") or "")
        if self._lanes.submit_nowait(deal_id, lambda: self._on_opu(data)):
            if self._backlogged and self._lanes.statistics().queued <= 1:
                self._backlogged = False
                logger.bind(event="broker.trade_backlog_cleared").info("TRADE backlog cleared")
            return
        self.counts["dropped"] += 1
        self._ask_resync()  # the poll loop reconciles from GET /positions at once
        if not self._backlogged:
            self._backlogged = True
            stats = self._lanes.statistics()
            logger.bind(
                event="broker.trade_backlog",
                deal_id=deal_id,
                busy_lanes=stats.busy_lanes,
                queued=stats.queued,
            ).warning("IG OPU of {} dropped: backlog full; reconciling positions", deal_id)

    async def _on_opu(self, data: Mapping[str, Any]) -> None:
        try:
            update = parse_opu(data)
        except (KeyError, TypeError, ValueError) as exc:
            logger.bind(event="broker.opu_malformed").warning("IG OPU ignored: {}", exc)
            return
        self.counts["opu"] += 1
        if update.status == "DELETED":
            last = self.known.pop(update.deal_id, None) or self._book.deals.get(update.deal_id)
            if last is not None:
                await self._send(await self._closed_event(last))
            self._book.forget(update.deal_id)
            return
        position = await self._position_of(update)
        if position is None:
            return
        old = self.known.get(update.deal_id)
        self._book.remember(position, update.flags)
        if old is None and self._manageable(update):
            self.known[update.deal_id] = position
            await self._send(PositionOpened(position, update.ts or self._clock()))
        elif old is not None:
            self.known[update.deal_id] = position
            ours = self._book.sent.get(position.deal_id) == position.stop
            if ours and old.limit == position.limit:
                return  # traild's own amendment landing: the gateway confirms it
            if (old.stop, old.limit) != (position.stop, position.limit):
                when = update.ts or self._clock()
                await self._send(
                    PositionAmended(position.deal_id, position.stop, position.limit, when)
                )
                logger.bind(
                    event="broker.position_updated",
                    deal_id=position.deal_id,
                    stop=position.stop,
                    limit=position.limit,
                    guaranteed=update.flags.guaranteed,
                    trailing=update.flags.trailing,
                ).info("IG {}: stop {} limit {}", position.deal_id, position.stop, position.limit)

    def _manageable(self, update: PositionUpdate) -> bool:
        why = self._book.refusal(update.flags)
        if why is None:
            return True
        self._book.refuse_once(update.deal_id, why, f"IG position {update.deal_id}: {why}")
        return False

    async def _position_of(self, update: PositionUpdate) -> Position | None:
        try:
            await self._markets.market(update.epic)
            inst = self._markets.instrument(update.epic)
        except (BrokerError, InstrumentError) as exc:
            self._book.refuse_once(update.deal_id, "no_market", f"IG OPU {update.deal_id}: {exc}")
            return None
        old = self.known.get(update.deal_id) or self._book.deals.get(update.deal_id)
        level = inst.from_broker(update.level) if update.level is not None else None
        if level is None or not update.direction:
            return None if old is None else _with_levels(old, update, inst)
        return Position(
            deal_id=update.deal_id,
            epic=update.epic,
            direction=Direction.parse(update.direction),
            size=update.size if update.size is not None else (old.size if old else 0.0),
            level=level,
            stop=None if update.stop is None else inst.from_broker(update.stop),
            limit=None if update.limit is None else inst.from_broker(update.limit),
            opened_at=old.opened_at if old else update.ts,
        )

    # -- reconciliation --------------------------------------------------------------------
    async def _reconcile(self, positions: list[Position]) -> None:
        known = self.known
        current = {p.deal_id: p for p in positions}
        for deal_id, position in current.items():
            if deal_id not in known:
                known[deal_id] = position
                await self._send(PositionOpened(position, self._clock()))
            known[deal_id] = position
        for deal_id in [d for d in known if d not in current]:
            try:
                still = await self._book.get_position(deal_id)
            except BrokerError as exc:
                logger.bind(event="broker.check_failed", deal_id=deal_id).warning(
                    "IG check of vanished position {} failed: {}", deal_id, exc
                )
                continue
            if still is not None:
                known[deal_id] = still
                continue
            closed = await self._closed_event(known.pop(deal_id))
            self._book.forget(deal_id)
            await self._send(closed)

    async def _closed_event(self, last: Position) -> PositionClosed:
        """Exit level from /history/activity; else estimated from the last stop/limit/quote."""
        inst = self._markets.instrument(last.epic)
        found = await self._close_activity(last, inst)
        source = "history"
        if found is None:
            source = "estimate"
            found = (self._estimate_exit(last), self._clock())
        level, ts = found
        reason, gap = classify_exit(last, level, inst)
        logger.bind(
            event="broker.position_closed", deal_id=last.deal_id, epic=last.epic, source=source
        ).info("IG closed {} at {} ({}, from {})", last.deal_id, level, reason, source)
        return PositionClosed(last.deal_id, level, reason, ts, gap)

    async def _close_activity(
        self, last: Position, inst: Instrument
    ) -> tuple[float, datetime] | None:
        opened = last.opened_at or self._clock() - timedelta(days=1)
        params = {"from": opened.strftime("%Y-%m-%dT%H:%M:%S"), "detailed": "true"}
        params["pageSize"] = "100"
        try:
            response = await self._book.session.request(
                "GET", "history/activity", version=3, params=params
            )
            assert response is not None
            for act in response.json().get("activities", []):
                details = act.get("details") or {}
                for action in details.get("actions") or []:
                    if (
                        action.get("actionType") == "POSITION_CLOSED"
                        and action.get("affectedDealId") == last.deal_id
                        and details.get("level") is not None
                    ):
                        when = ig_time(act.get("dateUTC") or act.get("date"))
                        return inst.from_broker(float(details["level"])), when or self._clock()
        except (BrokerError, KeyError, TypeError, ValueError, AttributeError) as exc:
            logger.bind(event="broker.history_failed", deal_id=last.deal_id).warning(
                "IG activity history unavailable for {}: {}", last.deal_id, exc
            )
        return None

    def _estimate_exit(self, last: Position) -> float:
        """Without history: the stop or limit nearest the last quote (it most likely hit),
        else the last exit-side quote (a manual close), else the entry."""
        quote = self._book.quotes.get(last.epic)
        price = None
        if quote is not None:
            price = quote[0] if last.direction is Direction.BUY else quote[1]
        levels = [level for level in (last.stop, last.limit) if level is not None]
        if levels:
            return min(levels, key=lambda level: abs(level - price)) if price else levels[0]
        return price or last.level


def _with_levels(old: Position, update: PositionUpdate, inst: Instrument) -> Position:
    """An UPDATED OPU without the full position: the old one with the new stop and limit."""
    stop = None if update.stop is None else inst.from_broker(update.stop)
    limit = None if update.limit is None else inst.from_broker(update.limit)
    return Position(
        old.deal_id, old.epic, old.direction, old.size, old.level, stop, limit, old.opened_at
    )
