"""The optional capabilities the composition root checks with ``isinstance`` (``traild.ports``)
are really there on the adapters that have them, and absent from the ones that do not."""

from __future__ import annotations

from traild.adapters.feeds import ReplayFeed, SyntheticFeed
from traild.adapters.ig.stream import IGStreamFeed
from traild.adapters.paper import PaperBroker
from traild.adapters.store import SqlTradeStore
from traild.core.instruments import InstrumentTable
from traild.ports import (
    ConfigBacked,
    EpicFollowingFeed,
    FlushableStore,
    HoldableFeed,
    LeaseBacked,
    MarketHours,
    PreloadedFeed,
    RecalculationHistory,
    StoreWithStatistics,
    TickListener,
)

EPIC = "CS.D.EURUSD.MINI.IP"


def test_the_paper_broker_fills_on_ticks() -> None:
    assert isinstance(PaperBroker(instruments=InstrumentTable(), seed=0), TickListener)


def test_a_replay_loads_up_front_and_waits_for_the_store() -> None:
    replay = ReplayFeed(["ticks.csv"], [EPIC])
    assert isinstance(replay, PreloadedFeed) and isinstance(replay, HoldableFeed)
    assert not any(isinstance(replay, c) for c in (EpicFollowingFeed, MarketHours))


def test_a_synthetic_feed_has_none_of_the_optional_capabilities() -> None:
    feed = SyntheticFeed([EPIC], seed=1)
    capabilities = (PreloadedFeed, HoldableFeed, EpicFollowingFeed, MarketHours)
    assert not any(isinstance(feed, c) for c in capabilities)


def test_the_ig_stream_follows_epics_and_knows_market_hours() -> None:
    assert issubclass(IGStreamFeed, EpicFollowingFeed) and issubclass(IGStreamFeed, MarketHours)
    assert not issubclass(IGStreamFeed, PreloadedFeed)


def test_the_sql_store_flushes_and_reports_its_queue() -> None:
    capabilities = (
        FlushableStore,
        StoreWithStatistics,
        ConfigBacked,
        LeaseBacked,
        RecalculationHistory,
    )
    for capability in capabilities:
        assert issubclass(SqlTradeStore, capability), capability
