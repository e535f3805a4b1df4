"""Output people can follow (issue 23, item 7): what ``--json`` holds is on the terminal too.

In-process (``traild.cli.main``) on small generated files: no shared data, no timing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_realtime_recalc import RECALC, _calm_then_surge
from traild.cli import main

EPIC = "CS.D.EURUSD.MINI.IP"
SIM = ["simulate", "--epic", EPIC, "--direction", "BUY", "--stop-pips", "20"]


@pytest.fixture
def surge(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "traild.toml"
    config.write_text(RECALC + "[pairs.DEFAULT.regular.regimes.trending]\nearly_be_trigger = 9\n")
    return _calm_then_surge(tmp_path / "surge.csv"), config


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_simulate_text_shows_the_stages_in_force_and_each_recalculation(
    surge: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRAILD_CONFIG", raising=False)
    ticks, config = surge
    calm = ["--atr-pips", "8", "--regime", "normal", "--session", "asian"]
    args = [*SIM, "--ticks", str(ticks), "--config", str(config), *calm]
    out = _run(capsys, *args, "--at", "2024-03-05T02:11:00Z")
    lines = out.splitlines()
    # the stages at entry, rung by rung (normal regime: 15 x 0.9 = 13.5 early BE trigger)
    assert "stages at entry: early BE 13.5 -> +1.8, stage 1 18 -> +7.2" in out
    # the recalculation at the surge bar's close, between the amendments around it, with the
    # regime change and the stages it put in force
    recalc = next(i for i, line in enumerate(lines) if "recalculated" in line)
    assert "2024-03-05T02:13:00.000Z" in lines[recalc]
    assert "volatility normal -> extreme" in lines[recalc] and "ATR 8.53 pips" in lines[recalc]
    assert "stages now: early BE 21.6 -> +2.88" in lines[recalc + 1]
    assert "02:12:40" in lines[recalc - 1] and "02:13:15" in lines[recalc + 2]
    assert "recalculations: 1; stages at the exit: early BE 21.6" in out
    assert "market regime n/a (too few ticks before the entry)" in out


def test_simulate_text_shows_the_market_regime_and_its_stage_table(
    surge: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRAILD_CONFIG", raising=False)
    ticks, config = surge
    args = [*SIM, "--ticks", str(ticks), "--config", str(config), "--market-regime", "trending"]
    out = _run(capsys, *args, "--at", "2024-03-05T02:11:00Z")
    assert "market regime trending (given)" in out
    assert "stages at entry (trending regime table): early BE " in out
    assert "recalculations: none (no closed bar moved the volatility regime far enough)" in out
