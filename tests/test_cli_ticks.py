"""``traild ticks export`` and ``report --counterfactual`` from the shell: bad input is one
line on stderr and an exit code; an export of recorded ticks is a normal tick file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from traild.adapters.recorder import columns_of
from traild.adapters.tickfiles import load_ticks
from traild.adapters.tickwriter import DayFiles
from traild.cli import main
from traild.core.messages import Tick

EPIC = "CS.D.EURUSD.MINI.IP"
T0 = datetime(2024, 3, 5, 20, 0, tzinfo=UTC)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import os

    for name in list(os.environ):
        if name.upper().startswith("TRAILD_"):
            monkeypatch.delenv(name)
    path = tmp_path / "traild.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n')
    ticks = [Tick(EPIC, T0 + timedelta(minutes=i), 1.1 + i * 1e-5, 1.1001 + i * 1e-5)
             for i in range(300)]  # fmt: skip
    DayFiles(tmp_path / "state" / "ticks", 30).write(columns_of(ticks))
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_export_of_a_period_across_midnight_is_a_tick_file(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.csv"
    code, text, _ = _run(["ticks", "export", "--config", str(config), "--epic", "EURUSD",
                          "--since", "2024-03-05T23:00Z", "--until", "2024-03-06T01:00Z",
                          "-o", str(out)], capsys)  # fmt: skip
    assert code == 0 and "wrote 120 ticks of CS.D.EURUSD.MINI.IP" in text
    cols = load_ticks(out)
    assert len(cols) == 120 and str(cols.ts[0]) == "2024-03-05T23:00:00.000"


@pytest.mark.parametrize(
    ("argv", "code", "line"),
    [
        (["--epic", "GBPUSD", "--since", "all"], 1, "no recorded ticks for GBPUSD"),
        (["--epic", EPIC, "--since", "2030-01-01"], 1, "no recorded ticks of"),
        (["--epic", EPIC, "--since", "2024-03-06", "--until", "2024-03-05"], 1,
         "--until must be after --since"),
        (["--epic", EPIC, "--since", "yesterday"], 2, "--since wants Nd, Nh, Nm"),
    ],
)  # fmt: skip
def test_bad_export_is_one_line_and_an_exit_code(
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    line: str,
) -> None:
    got, _, err = _run(
        ["ticks", "export", "--config", str(config), *argv, "-o", str(tmp_path / "x.csv")], capsys
    )
    assert got == code and line in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()


def test_counterfactual_report_without_a_database_is_one_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got, _, err = _run(["report", "--config", str(config), "--counterfactual"], capsys)
    assert got == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
