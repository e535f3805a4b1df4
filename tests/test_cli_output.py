"""Output people can follow (issue 23, item 7): what ``--json`` holds is on the terminal too.

In-process (``traild.cli.main``) on small generated files: no shared data, no timing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_realtime_recalc import RECALC, _calm_then_surge
from traild.cli import backtest_cmds, main

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


@pytest.fixture
def empty_config(tmp_path: Path) -> Path:
    path = tmp_path / "empty.toml"
    path.write_text("")
    return path


def test_backtest_prints_the_walk_forward_verdict_and_progress_lines_while_reading_and_writing(
    synthetic_eurusd: Path,
    tmp_path: Path,
    empty_config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backtest_cmds, "_interactive", lambda: True)  # stderr as a terminal
    args = ["backtest", "--ticks", str(synthetic_eurusd), "--random", "60", "--seed", "3"]
    args += ["--variants", "fixed+lock,dynamic+lock", "--grid", "volatility.normal=0.8,1.2"]
    args += ["--walk-forward", "3", "--out", str(tmp_path / "o"), "--config", str(empty_config)]
    assert main([*args, "--jobs", "1"]) == 0
    out, err = capsys.readouterr()
    # the verdict on the terminal, as in report.md
    verdict = next(line for line in out.splitlines() if line.startswith("walk-forward verdict"))
    assert "(3 folds): " in verdict
    word = verdict.split(": ")[1]
    assert word in ("improved", "worse", "inconclusive")
    assert "out-of-sample trades on dynamic+lock" in out and "95 % CI" in out
    assert f"**Verdict: {word}.**" in (tmp_path / "o" / "report.md").read_text()
    # progress lines on stderr for the steps the trade-run bar misses, in the order they happen
    notes = [line for line in err.splitlines() if line.startswith("backtest: ")]
    steps = [line.removeprefix("backtest: ") for line in notes]
    assert steps[0] == f"reading {synthetic_eurusd.name} (1 of 1)"
    expected = (
        "finding the entries",
        "60 entries x 4 variants: 240 trade runs",
        "judging the claims",
        "writing trades.csv (240 rows)",
        "drawing the charts",
    )
    at = [next(i for i, s in enumerate(steps) if s.startswith(e)) for e in expected]
    assert at == sorted(at)
    assert "240/240 trade runs" in err  # and the bar between them


def test_backtest_progress_stays_off_a_pipe_so_an_error_is_one_line(
    tmp_path: Path, empty_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "EURUSD_missing.csv"
    args = ["backtest", "--ticks", str(missing), "--random", "5", "--config", str(empty_config)]
    assert main([*args, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err == f"traild: error: tick file not found: {missing}\n"
