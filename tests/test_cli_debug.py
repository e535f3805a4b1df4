"""``TRAILD_DEBUG=1``, which every internal-error message recommends, is not a setting: every
command works with it, and it shows the traceback of an internal error (exit 70)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.e2e.daemon_helpers import log_events, traild, write_config
from traild.cli import main
from traild.cli.errors import EXIT_SOFTWARE
from traild.config.settings import describe_sources, load

EPIC = "CS.D.EURUSD.MINI.IP"


def test_traild_debug_is_not_an_unknown_setting() -> None:
    env = {"TRAILD_DEBUG": "1", "TRAILD_DAEMON__HEARTBEAT_S": "5"}
    assert load(None, env).daemon.heartbeat_s == 5
    assert "TRAILD_DEBUG" not in describe_sources(None, env)


@pytest.mark.parametrize("argv", [["check-config"], ["calc", "--epic", EPIC, "--atr-pips", "8"]])
def test_commands_run_with_traild_debug_set(tmp_path: Path, argv: list[str]) -> None:
    config = tmp_path / "empty.toml"
    config.write_text("")
    run = traild(*argv, "--config", str(config), env={"TRAILD_DEBUG": "1"}, check=False)
    assert run.returncode == 0, run.stderr
    assert "unknown key" not in run.stderr


def test_the_daemon_runs_with_traild_debug_set(tmp_path: Path) -> None:
    replay = tmp_path / "EURUSD_one.csv"
    replay.write_text("ts_utc,bid,ask\n2019-01-02T00:00:00Z,1.1,1.1001\n")
    config = write_config(tmp_path / "traild.toml", tmp_path / "state", [replay], [EPIC])
    traild("migrate", "--config", str(config))
    run = traild("run", "--config", str(config), env={"TRAILD_DEBUG": "1"}, check=False)
    assert run.returncode == 0, run.stderr
    assert "feed.finished" in [e["event"] for e in log_events(run.stderr)]


def _crash(args: argparse.Namespace) -> int:
    raise RuntimeError("a bug")


@pytest.mark.parametrize("debug", [False, True])
def test_an_internal_error_shows_its_traceback_only_with_traild_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], debug: bool
) -> None:
    from traild.cli import core_cmds

    monkeypatch.delenv("TRAILD_DEBUG", raising=False)
    if debug:
        monkeypatch.setenv("TRAILD_DEBUG", "1")
    monkeypatch.setattr(core_cmds, "_calc", _crash)
    assert main(["calc", "--epic", EPIC, "--atr-pips", "8"]) == EXIT_SOFTWARE
    err = capsys.readouterr().err
    assert err.startswith("traild: error: internal error (RuntimeError: a bug)")
    assert ("Traceback" in err) is debug
