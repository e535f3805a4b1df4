"""The generated tick files stand in for real data only if they are clean, tradeable and fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.synthetic import EURUSD_2019, synthetic_rows
from traild.backtest.markets import TickSource, load_market
from traild.backtest.simulate import SimulationRequest, simulate
from traild.config.settings import Settings
from traild.core.messages import Direction


def test_the_same_spec_always_gives_the_same_rows() -> None:
    assert synthetic_rows(EURUSD_2019) == synthetic_rows(EURUSD_2019)
    assert synthetic_rows(EURUSD_2019)[0].startswith("2019-01-01T23:00:")


@pytest.mark.parametrize("fixture", ["synthetic_eurusd", "synthetic_usdjpy"])
def test_every_generated_tick_passes_the_tick_guard(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(fixture)
    settings = Settings()
    market = load_market(TickSource.parse(str(path)), settings.instrument_table())
    assert (len(market), market.rejected, market.crossed) == (10_000, 0, 0)


@pytest.mark.parametrize("direction", [Direction.BUY, Direction.SELL])
def test_a_trade_on_generated_ticks_reaches_the_ladder(
    synthetic_eurusd: Path, direction: Direction
) -> None:
    at = None if direction is Direction.BUY else EURUSD_2019.start.replace(day=2, hour=0, minute=40)
    request = SimulationRequest(
        ticks=str(synthetic_eurusd),
        epic="EURUSD",
        direction=direction,
        stop_pips=15,
        limit_pips=None,
        at=at,
    )
    result = simulate(Settings(), request)
    assert result["amendments"], "the walk must move far enough to lock a profit"
    assert result["amendments"][0]["reason"] == "profit_lock"
