"""Argument errors found after argparse exit 2 like argparse's own (issue #23), with one line
on stderr naming the argument; nothing is read or written first."""

from __future__ import annotations

from pathlib import Path

import pytest

from traild.cli import main

BACKTEST = ["backtest", "--random", "5", "--config", "{config}", "--out", "{out}"]
TICKS = ["--ticks", "{ticks}"]
CONFIG_SET = ["config", "set", "--config", "{config}"]

# (case id, argv, text in the one line)
CASES = [
    ("variants-unknown", [*BACKTEST, *TICKS, "--variants", "turbo"], "unknown variant(s) turbo"),
    ("variants-empty", [*BACKTEST, *TICKS, "--variants", ""], "no variants to run"),
    ("grid-no-equals", [*BACKTEST, *TICKS, "--grid", "volatility.low"], "expected KEY=V1,V2"),
    ("grid-unknown-key", [*BACKTEST, *TICKS, "--grid", "volatility.calm=1"], "unknown key"),
    ("grid-not-a-number", [*BACKTEST, *TICKS, "--grid", "volatility.low=x"], "not a number"),
    ("grid-regime-key", [*BACKTEST, *TICKS, "--grid", "regime.x=1"], "regime tables take"),
    ("walk-forward-1", [*BACKTEST, *TICKS, "--walk-forward", "1"], "--walk-forward K needs K >= 2"),
    ("ask-bars-count", [*BACKTEST, "--bars", "{ticks}", "{ticks}=GBPUSD", "--ask-bars", "{ticks}"],
     "--ask-bars needs one file per --bars file"),
    ("no-ticks-no-bars", BACKTEST, "give --ticks FILE or --bars FILE"),
    ("config-set-no-equals", [*CONFIG_SET, "EURUSD", "regular.stage1_lock"],
     "'regular.stage1_lock': expected KEY=VALUE"),
    ("config-set-empty-key", [*CONFIG_SET, "EURUSD", "="], "pairs.EURUSD.: not a key path"),
    ("config-set-unknown-key", [*CONFIG_SET, "EURUSD", "regular.stage1_lokc=3"],
     "did you mean regular.stage1_lock?"),
    ("config-unset-unknown-key",
     ["config", "unset", "EURUSD", "regular.stage1_lokc", "--config", "{config}"],
     "pairs.EURUSD.regular.stage1_lokc: unknown key; did you mean regular.stage1_lock?"),
    ("config-unset-nonsense", ["config", "unset", "EURUSD", "foo", "--config", "{config}"],
     "a pair takes <regular|scalp>.<stage key>"),
    ("config-set-a-table", [*CONFIG_SET, "EURUSD", "regular.regimes=1"], "a table"),
    ("config-set-kind", [*CONFIG_SET, "EURUSD", "scalp=1"], "a table: set one key at a time"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_argument_error_exits_2_with_one_line(
    tmp_path: Path,
    synthetic_eurusd: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    text: str,
) -> None:
    config = tmp_path / "traild.toml"
    db = tmp_path / "state" / "traild.db"
    config.write_text(f'[daemon]\nstate_dir = "{db.parent}"\n')
    fill = {"config": str(config), "out": str(tmp_path / "out"), "ticks": str(synthetic_eurusd)}
    try:
        code = main([a.format(**fill) for a in argv])
    except SystemExit as exc:  # argparse
        code = int(str(exc.code))
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == "" and err.startswith("traild: error: ") and err.count("\n") == 1, err
    assert text in err
    assert not (tmp_path / "out").exists() and not db.exists()


@pytest.mark.parametrize("action", ["set", "unset", "show"])
def test_config_help_explains_pair_and_key_with_examples(
    capsys: pytest.CaptureFixture[str], action: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["config", action, "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "a symbol (EURUSD), DEFAULT" in out and "examples: traild config " in out
    if action != "show":
        assert "regular.<stage key> or scalp.<stage key>" in out
