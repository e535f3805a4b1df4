"""Backtest entries: signals CSV parsing and filling, seeded random entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backtest.helpers import SMALL
from traild.backtest.markets import Market, TickSource, load_market
from traild.backtest.signals import random_signals, read_signals, resolve
from traild.core.conditions import ConditionParams
from traild.core.errors import DataError
from traild.core.instruments import InstrumentTable
from traild.core.messages import Direction

HEADER = "ts_utc,epic,direction,stop_pips,limit_pips,is_scalp,atr_pips,volatility_regime,session\n"
TABLE = InstrumentTable()


@pytest.fixture(scope="module")
def small(ticks_dir: Path) -> list[Market]:
    return [load_market(TickSource.parse(str(ticks_dir / SMALL)), TABLE)]


@pytest.fixture(scope="module")
def generated(synthetic_eurusd: Path) -> list[Market]:
    """A generated EURUSD market (for tests that only need one to exist)."""
    return [load_market(TickSource.parse(str(synthetic_eurusd)), TABLE)]


@pytest.fixture(scope="module")
def two(synthetic_eurusd: Path, synthetic_usdjpy: Path) -> list[Market]:
    """Two generated files (random entries need only their spans, not real prices)."""
    return [
        load_market(TickSource.parse(str(p)), TABLE) for p in (synthetic_eurusd, synthetic_usdjpy)
    ]


def _csv(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "signals.csv"
    path.write_text(header + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def test_signal_fills_at_the_first_tick_at_or_after_its_time_on_the_right_side(
    tmp_path: Path, small: list[Market]
) -> None:
    path = _csv(
        tmp_path,
        "2019-01-02T00:30:00Z,CS.D.EURUSD.MINI.IP,BUY,10,20,true,,,",
        "2019-01-02T00:30:00.341Z,EURUSD,sell,12.5,,no,7.5,high,london",
    )
    signals = read_signals(path, small, TABLE)
    buy, sell = resolve(signals, small, ConditionParams())
    # First tick at/after 00:30:00: 00:30:00.341Z bid 1.14578 ask 1.14582.
    assert (buy.direction, buy.entry, buy.stop, buy.limit) == (
        Direction.BUY,
        114582,
        114482,
        114782,
    )
    assert buy.epic == "CS.D.EURUSD.MINI.IP" and buy.is_scalp
    assert buy.conditions.session == "asian"  # computed from the entry time
    assert (sell.entry, sell.stop, sell.limit, sell.is_scalp) == (114578, 114703, None, False)
    assert (sell.conditions.atr_pips, sell.conditions.volatility_regime) == (7.5, "high")
    assert sell.conditions.session == "london"  # a signal's own field wins


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2019-01-02T00:30:00Z,EURUSD,UP,10,20,,,,", r"signals.csv:2: direction"),
        ("yesterday,EURUSD,BUY,10,20,,,,", r"signals.csv:2: ts_utc"),
        ("2019-01-02T00:30:00Z,EURUSD,BUY,-3,20,,,,", r"signals.csv:2: stop_pips must be"),
        ("2019-01-02T00:30:00Z,EURUSD,BUY,10,abc,,,,", r"signals.csv:2: limit_pips is not"),
        ("2019-01-02T00:30:00Z,EURUSD,BUY,10,20,maybe,,,", r"signals.csv:2: is_scalp"),
        ("2019-01-02T00:30:00Z,XYZABC,BUY,10,20,,,,", r"signals.csv:2: unknown instrument"),
        ("2019-01-02T00:30:00Z,GBPUSD,BUY,10,20,,,,", r"signals.csv:2: no tick file"),
        ("2019-01-02T00:30:00Z,EURUSD,BUY,10", r"signals.csv:2: expected 9 fields"),
    ],
)
def test_bad_signal_row_is_an_error_naming_file_and_line(
    tmp_path: Path, generated: list[Market], row: str, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        read_signals(_csv(tmp_path, row), generated, TABLE)


def test_signals_file_without_a_required_column_is_an_error(
    tmp_path: Path, generated: list[Market]
) -> None:
    path = _csv(tmp_path, "2019-01-02T00:30:00Z,EURUSD,BUY", header="ts_utc,epic,direction\n")
    with pytest.raises(DataError, match=r"lacks column.*stop_pips, limit_pips"):
        read_signals(path, generated, TABLE)


def test_signal_after_the_last_tick_is_an_error(tmp_path: Path, small: list[Market]) -> None:
    signals = read_signals(
        _csv(tmp_path, "2019-01-02T01:36:09.581Z,EURUSD,BUY,10,20,,,,"), small, TABLE
    )
    with pytest.raises(DataError, match="no tick after its entry"):
        resolve(signals, small, ConditionParams())


def test_random_entries_are_a_function_of_the_seed(two: list[Market]) -> None:
    first = random_signals(300, 42, two)
    assert first == random_signals(300, 42, two)
    assert first != random_signals(300, 43, two)
    assert [s.ts_ms for s in first] == sorted(s.ts_ms for s in first)


def test_random_entries_cover_every_file_in_proportion_to_its_span(two: list[Market]) -> None:
    signals = random_signals(2000, 1, two)
    spans = [int(m.ts_ms[-1] - m.ts_ms[0]) for m in two]
    share = sum(s.market == 1 for s in signals) / len(signals)
    assert abs(share - spans[1] / sum(spans)) < 0.05
    assert {s.direction for s in signals} == {Direction.BUY, Direction.SELL}
    assert 0.4 < sum(s.is_scalp for s in signals) / len(signals) < 0.6
    trades = resolve(signals, two, ConditionParams(), clamp_to_data=True)
    for s, t in zip(signals, trades, strict=True):
        m = two[s.market]
        assert m.ts_ms[t.entry_idx] >= s.ts_ms or t.entry_idx == len(m) - 2
        assert t.entry_idx == 0 or m.ts_ms[t.entry_idx - 1] < s.ts_ms
        pips = (s.stop_pips, s.limit_pips)
        assert pips == ((10.0, 25.0) if s.is_scalp else (20.0, 50.0))
