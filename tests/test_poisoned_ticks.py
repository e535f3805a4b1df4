"""One bad tick costs exactly that tick: simulate and backtest over clean EURUSD ticks (generated,
so a fresh clone runs them too) with a future timestamp, 600-pip prints and a 150-pip bad print
inserted give the clean file's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.poison import FUTURE_LINE, poisoned, spikes
from tests.test_cli_core import traild
from traild.backtest.markets import TickSource, load_market
from traild.backtest.simulate import SimulationRequest, simulate
from traild.config.settings import Settings
from traild.core.messages import Direction

EPIC = "CS.D.EURUSD.MINI.IP"
PIP = 0.0001


@pytest.fixture
def clean(synthetic_eurusd: Path) -> Path:
    return synthetic_eurusd


@pytest.fixture
def dirty(clean: Path, tmp_path: Path) -> Path:
    """The 2019 file with every kind of bad tick the guard must drop."""
    return poisoned(
        clean,
        tmp_path / "EURUSD_poisoned.csv",
        {
            500: [FUTURE_LINE],  # issue #11: a tick five weeks ahead
            2000: spikes(clean, 2000, 600 * PIP, 3),  # three 600-pip prints in a row
            3000: spikes(clean, 3000, -150 * PIP, 1),  # a 150-pip bad print on quiet data
            4000: spikes(clean, 4000, 150 * PIP, 1),
            5000: ["2019-01-01T20:00:00.000Z,1.1460,1.1461"],  # hours in the past
            6000: ["2019-01-02T00:40:00.000Z,nan,1.1461"],
        },
    )


def _trade(path: Path, direction: Direction, stop: float, at: str | None) -> dict[str, Any]:
    from traild.cli.args import timestamp

    req = SimulationRequest(
        ticks=str(path),
        epic=EPIC,
        direction=direction,
        stop_pips=stop,
        limit_pips=40,
        at=None if at is None else timestamp(at),
    )
    return simulate(Settings(), req)


@pytest.mark.parametrize(
    ("direction", "stop", "at"),
    [
        (Direction.BUY, 15, None),
        (Direction.SELL, 15, None),
        (Direction.BUY, 6, "2019-01-02T00:00:00Z"),
        (Direction.SELL, 6, "2019-01-02T00:00:00Z"),
        (Direction.BUY, 3, "2019-01-01T23:30:00Z"),
    ],
)
def test_a_poisoned_file_gives_the_clean_files_trade(
    clean: Path, dirty: Path, direction: Direction, stop: float, at: str | None
) -> None:
    want, got = _trade(clean, direction, stop, at), _trade(dirty, direction, stop, at)
    assert want.pop("rejected_ticks") == {}
    assert set(got.pop("rejected_ticks")) <= {
        "future_timestamp",
        "spike",
        "out_of_order",
        "non_finite",
    }
    assert got == want


def test_the_issue_11_future_tick_is_one_rejected_tick(clean: Path, tmp_path: Path) -> None:
    dirty = poisoned(clean, tmp_path / "EURUSD_future.csv", {500: [FUTURE_LINE]})
    args = ["--epic", EPIC, "--direction", "SELL", "--stop-pips", "15", "--json"]
    want = _trade(clean, Direction.SELL, 15, None)
    got = _trade(dirty, Direction.SELL, 15, None)
    assert got.pop("rejected_ticks") == {"future_timestamp": 1}
    want.pop("rejected_ticks")
    assert got == want
    assert got["exit"]["ts"] < "2019-01-03"  # not the bad tick's 2019-02-09
    human = traild("simulate", "--ticks", str(dirty), *args[:-1], cwd=tmp_path)
    assert human.code == 0, human.err
    assert "rejected ticks: 1 (future_timestamp 1)" in human.out
    assert "limit none" in human.out  # no Python reprs: not "limit None", no "gap False"
    assert "None" not in human.out and "False" not in human.out
    conditions = next(x for x in human.out.splitlines() if x.startswith("conditions: "))
    assert conditions.startswith("conditions: ATR pips n/a (too few ticks before the entry)")
    assert "session asian (ticks)" in conditions


def test_backtest_markets_hold_exactly_the_clean_ticks(clean: Path, dirty: Path) -> None:
    settings = Settings()
    want = load_market(TickSource(clean, EPIC), settings.instrument_table(), settings.guard_params)
    got = load_market(TickSource(dirty, EPIC), settings.instrument_table(), settings.guard_params)
    assert np.array_equal(got.ts_ms, want.ts_ms)
    assert np.array_equal(got.bid, want.bid) and np.array_equal(got.ask, want.ask)
    assert got.rejected_by == {
        "future_timestamp": 1,
        "non_finite": 1,
        "out_of_order": 1,
        "spike": 5,
    }


def test_backtest_reports_rejected_ticks_on_the_terminal_and_in_run_json(
    dirty: Path, tmp_path: Path
) -> None:
    import json

    empty = tmp_path / "empty.toml"
    empty.write_text("")
    out = tmp_path / "out"
    run = traild(
        "backtest", "--ticks", f"{dirty}={EPIC}", "--random", "4", "--jobs", "1",
        "--out", str(out), "--config", str(empty), cwd=tmp_path,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert (
        "EURUSD_poisoned.csv: 8 ticks rejected "
        "(future_timestamp 1, non_finite 1, out_of_order 1, spike 5)" in run.out
    )
    ticks = json.loads((out / "run.json").read_text())["ticks"][0]
    assert ticks["rejected"] == 8 and ticks["rejected_by"]["spike"] == 5
    report = (out / "report.md").read_text()
    assert "8 rejected: future_timestamp 1, non_finite 1, out_of_order 1, spike 5" in report
    assert "{'" not in report and "None" not in report  # human text, no Python reprs


@pytest.mark.parametrize(
    ("kind", "row", "shift", "count"),
    [
        ("spike", 3000, -150 * PIP, 1),  # a 150-pip bad print would stop the BUY out
        ("spike", 3000, 150 * PIP, 1),  # ... or stop the SELL out
        ("spike", 2000, 600 * PIP, 3),  # three 600-pip prints never become the level
        ("spike", 2000, -600 * PIP, 3),
    ],
)
def test_each_bad_print_alone_is_rejected_and_changes_nothing(
    clean: Path, tmp_path: Path, kind: str, row: int, shift: float, count: int
) -> None:
    dirty = poisoned(clean, tmp_path / "EURUSD_x.csv", {row: spikes(clean, row, shift, count)})
    for direction in (Direction.BUY, Direction.SELL):
        want = _trade(clean, direction, 15, None)
        got = _trade(dirty, direction, 15, None)
        assert got.pop("rejected_ticks") == {kind: count}
        want.pop("rejected_ticks")
        assert got == want
