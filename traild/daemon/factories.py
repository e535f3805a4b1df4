"""The daemon's parts built from the settings: the broker, the feed, the IG session, the
supervisor's policy and the journal's path. Only the composition root (``app``) and the CLI
call these; the IGBroker is constructed in exactly one place (``open_ig_broker``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from traild.config.models import IGSettings
from traild.config.settings import Settings
from traild.core.errors import ConfigError
from traild.core.instruments import InstrumentTable
from traild.ports import Broker, MarketHours, PriceFeed, TradeStore
from traild.runtime.stages import Policy

if TYPE_CHECKING:
    from traild.adapters.ig.options import IGStream
    from traild.adapters.ig.rest import IGBroker


def make_policy(settings: Settings, broker: Broker) -> Policy:
    """The supervisor's view of the settings (min stop distance: the strictest source)."""
    d = settings.daemon
    table = settings.instrument_table()

    def min_distance(epic: str) -> float:
        return max(
            settings.broker.min_stop_distance_pips,
            broker.min_stop_distance_pips(epic),
            float(table.resolve(epic).min_stop_distance_pips),
        )

    return Policy(
        calculator=settings.calculator_params(),
        ladder=settings.ladder_policy(settings.broker.min_stop_distance_pips),
        fixed_stages=settings.stage_config,
        restart_budget=d.restart_budget,
        restart_backoff=d.restart_backoff_s,
        restart_backoff_max=d.restart_backoff_max_s,
        dynamic_failures_before_fixed=d.dynamic_failures_before_fixed,
        persist_every_s=d.persist_best_every_s,
        reconcile_stops_s=d.reconcile_stops_s,
        min_distance=min_distance,
        regime_tables=settings.regime_tables,
        realtime_recalc=settings.trailing.realtime_recalc,
        realtime_regime_shift=settings.trailing.realtime_regime_shift,
    )


def journal_path(settings: Settings) -> Path:
    """The write-ahead journal of this database (``journal_dir``)."""
    from traild.adapters.store.journal import journal_dir

    return journal_dir(settings.state_path(), display_url(settings.database_url()))


def display_url(url: str) -> str:
    """The database URL with its password masked (for logs)."""
    from traild.adapters.store import display_url as masked

    return masked(url)


def market_gate(feed: PriceFeed) -> Callable[[str], bool] | None:
    """The feed's dealing state where it has one (IG: DLG_FLAG), else always open."""
    return feed.market_open if isinstance(feed, MarketHours) else None


async def restore_paper(broker: Broker, store: TradeStore) -> None:
    """A replay restarted after a crash: the paper book is rebuilt from trade_log with each
    trade's initial stop; the actors re-trail from the start of the replay (catch-up)."""
    from traild.adapters.paper import PaperBroker

    if not isinstance(broker, PaperBroker):
        return
    for trade in await store.load_open_trades():
        if trade.entry_price is None:
            continue
        stop = trade.initial_sl_price if trade.initial_sl_price is not None else trade.sl_price
        broker.add_position(trade.position(stop))


@asynccontextmanager
async def open_broker(
    s: Settings, instruments: InstrumentTable, given: Broker | None
) -> AsyncIterator[Broker]:
    """The configured broker (an injected one as is); IG owns an HTTP session."""
    if given is not None:
        yield given
        return
    b = s.broker
    if b.kind == "ig":
        async with open_ig_broker(s, instruments) as broker:
            yield broker
        return
    from traild.adapters.paper import PaperBroker

    yield PaperBroker(instruments=instruments, seed=b.fault_seed, **b.paper_options())


def make_feed(s: Settings, broker: Broker | None) -> PriceFeed:
    """The configured feed (IG: it streams through ``broker``'s Lightstreamer session)."""
    from traild.adapters.feeds import ReplayFeed, SyntheticFeed

    f = s.feed
    if f.kind == "replay":
        return ReplayFeed(f.files, f.epics, f.speed)
    if f.kind == "synthetic":
        return SyntheticFeed(
            f.synthetic_epics,
            seed=f.synthetic_seed,
            ticks_per_second=f.synthetic_ticks_per_second,
            mean_interval_ms=f.synthetic_interval_ms or None,
            instruments=s.instrument_table(),
        )
    from traild.adapters.ig.rest import IGBroker
    from traild.adapters.ig.stream import IGStreamFeed

    if not isinstance(broker, IGBroker):
        raise ConfigError(["feed.kind: 'ig' needs broker.kind = 'ig'"])
    return IGStreamFeed(
        f.epics,
        broker.stream,  # the account's one Lightstreamer session, shared with TRADE
        account_id=broker.account_id,
        scale=broker.stream_scale,
        stale_after=f.stale_after_s,
    )


@asynccontextmanager
async def open_ig_broker(
    s: Settings,
    instruments: InstrumentTable | None = None,
    *,
    trade_stream: bool = True,
    retry_login: bool = True,
) -> AsyncIterator[IGBroker]:
    """An IGBroker from ``[broker.ig]`` (logged in for the duration of the block).

    ``traild ig check`` passes ``trade_stream=False`` and ``retry_login=False`` (it reports a
    failed login at once instead of waiting it out)."""
    from traild.adapters.ig import options as o
    from traild.adapters.ig.rest import IGBroker

    ig = s.broker.ig
    # an unreachable IG or a 5xx is waited out here, not by systemd restarts
    backoff = (min(1.0, ig.login_backoff_max_s), ig.login_backoff_max_s) if retry_login else None
    async with IGBroker(
        o.IGCredentials(ig.api_url, ig.api_key, ig.identifier, ig.password, ig.account_id or None),
        instruments=instruments or s.instrument_table(),
        timeouts=o.IGTimeouts(request=ig.request_timeout_s, session_refresh=ig.session_refresh_s),
        retry=o.IGRetry(
            login_backoff=backoff,
            confirm_attempts=ig.confirm_attempts,
            confirm_interval=ig.confirm_interval_s,
        ),
        limits=o.IGLimits(
            trading=ig.trading_allowance,
            account=ig.account_allowance,
            application=ig.application_allowance,
        ),
        events=o.IGEvents(
            use_stream=trade_stream and ig.trade_stream,
            poll_interval=ig.positions_poll_s,
            reconcile_interval=ig.reconcile_s,
        ),
        take_over=o.IGTakeOver(
            guaranteed=ig.take_over_guaranteed_stops, trailing=ig.take_over_trailing_stops
        ),
        markets=o.IGMarkets(rules_ttl=ig.rules_ttl_s),
        stream=ig_stream(ig),
    ) as broker:
        yield broker


def ig_stream(ig: IGSettings) -> IGStream:
    """The settings of the account's Lightstreamer session (PRICE feed and TRADE stream)."""
    from traild.adapters.ig.options import IGStream

    return IGStream(
        url=ig.stream_url or None,
        keepalive_ms=ig.keepalive_ms,
        backoff_initial=ig.reconnect_initial_s,
        backoff_max=ig.reconnect_max_s,
        tlcp_version=ig.tlcp_version,
        timeout=ig.request_timeout_s,
    )
