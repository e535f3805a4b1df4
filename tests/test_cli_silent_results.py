"""Inputs that used to give a plausible-looking wrong result without a word (issue #23): each is
now refused, or reported beside the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from traild.cli import main

SIM = ["simulate", "--epic", "EURUSD", "--direction", "BUY", "--stop-pips", "10"]


@pytest.fixture
def empty(tmp_path: Path) -> str:
    path = tmp_path / "empty.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n')
    return str(path)


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse
        code = int(str(exc.code))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_refuses_an_entry_far_from_the_market(
    synthetic_eurusd: Path, empty: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _main(
        capsys, *SIM, "--ticks", str(synthetic_eurusd), "--entry", "5.0", "--config", empty
    )
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "--entry 5 is 38" in err and "pips from the market" in err and "more than 500" in err


def test_simulate_warns_of_an_entry_some_way_from_the_market(
    synthetic_eurusd: Path, empty: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*SIM, "--ticks", str(synthetic_eurusd), "--entry", "1.1490", "--config", empty]
    code, out, _ = _main(capsys, *args, "--json")
    assert code == 0
    (warning,) = json.loads(out)["warnings"]
    assert warning.startswith("--entry 1.149 is 29.3 pips from the market (1.14607 at 2019-")
    code, out, _ = _main(capsys, *args)
    assert code == 0 and "  warning: --entry 1.149 is" in out
    code, out, _ = _main(capsys, *SIM, "--ticks", str(synthetic_eurusd), "--entry", "1.1461",
                         "--json", "--config", empty)  # fmt: skip
    assert code == 0 and "warnings" not in json.loads(out)  # a pip or two is a fill, not a typo


def _signals(tmp_path: Path, ts: str) -> str:
    path = tmp_path / "signals.csv"
    path.write_text(
        "ts_utc,epic,direction,stop_pips,limit_pips,is_scalp,atr_pips,volatility_regime,session\n"
        f"2019-01-02T00:30:00Z,EURUSD,BUY,10,20,false,,,\n{ts},EURUSD,SELL,10,20,false,,,\n"
    )
    return str(path)


@pytest.mark.parametrize("ts", ["1999-01-04T10:00:00Z", "2018-12-20T10:00:00Z"])
def test_a_signal_long_before_the_ticks_is_reported_not_filled(
    synthetic_eurusd: Path, empty: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], ts: str
) -> None:
    code, out, err = _main(
        capsys, "backtest", "--ticks", str(synthetic_eurusd), "--signals", _signals(tmp_path, ts),
        "--out", str(tmp_path / "out"), "--config", empty,
    )  # fmt: skip
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert f"signals.csv:3: signal at {ts[:10]} 10:00 UTC, but the first tick after it" in err
    assert "the file spans 2019-01-01 23:00 to 2019-01-02 01:4" in err
    assert not (tmp_path / "out").exists()


def test_the_same_tick_file_twice_is_read_once_with_a_warning(
    synthetic_eurusd: Path, empty: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    twice = [str(synthetic_eurusd), f"{synthetic_eurusd.parent}/../{synthetic_eurusd.parent.name}"
             f"/{synthetic_eurusd.name}"]  # fmt: skip
    code, _, err = _main(
        capsys, "backtest", "--ticks", *twice, "--random", "4", "--jobs", "1", "--json",
        "--out", str(out_dir), "--config", empty,
    )  # fmt: skip
    assert code == 0, err
    assert err.startswith(f"traild: warning: --ticks {twice[1]} repeats {twice[0]}; read once")
    assert len(json.loads((out_dir / "run.json").read_text())["ticks"]) == 1


def test_a_bars_file_given_twice_is_refused(
    synthetic_eurusd: Path, empty: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bars = tmp_path / "EURUSD_bars.csv"
    bars.write_text("ts_utc,open,high,low,close\n")
    code, _, err = _main(capsys, "backtest", "--bars", str(bars), str(bars), "--random", "4",
                         "--config", empty)  # fmt: skip
    assert (
        code == 2 and err.count("\n") == 1 and f"--bars {bars} repeats {bars}; give it once" in err
    )


@pytest.mark.parametrize(
    ("who", "message"),
    [("x" * 100_000, "at most 64 characters, not 100,000"), ("a\nb", "one line of printable")],
)
def test_config_set_by_is_bounded(
    empty: str, capsys: pytest.CaptureFixture[str], who: str, message: str
) -> None:
    argv = ["config", "set", "EURUSD", "regular.stage1_lock=9", "--by", who, "--config", empty]
    code, out, err = _main(capsys, *argv)
    assert (code, out) == (2, "") and err.count("\n") == 1 and message in err
