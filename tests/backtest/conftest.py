"""Fixtures of the backtest tests: the real tick files and loaded markets (loaded once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backtest.helpers import GBPJPY, OANDA
from traild.backtest.markets import Market, TickSource, load_market
from traild.core.instruments import InstrumentTable


@pytest.fixture(scope="session")
def ticks_dir(shared_data_dir: Path) -> Path:
    return shared_data_dir / "ticks"


@pytest.fixture(scope="session")
def oanda(ticks_dir: Path) -> Market:
    return load_market(TickSource.parse(str(ticks_dir / OANDA)), InstrumentTable())


@pytest.fixture(scope="session")
def gbpjpy(ticks_dir: Path) -> Market:
    return load_market(TickSource.parse(str(ticks_dir / GBPJPY)), InstrumentTable())


@pytest.fixture
def empty_config(tmp_path: Path) -> Path:
    """A config file with nothing in it: the embedded defaults, whatever config/ holds."""
    path = tmp_path / "traild.toml"
    path.write_text("", encoding="utf-8")
    return path
