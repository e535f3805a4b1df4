"""Every bad input a new user met (issue #11), table-driven: the exit code, one line on stderr,
never a traceback. Runs ``traild.cli.main`` in-process with a clean TRAILD_* environment."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from traild.cli import main

EURUSD = "CS.D.EURUSD.MINI.IP"
TRADE = ["trade", "add", "--epic", EURUSD]


def _reversed_ticks(tmp: Path, src: Path) -> str:
    with gzip.open(src, "rt") as fh:
        header, *rows = fh.read().splitlines()
    path = tmp / "EURUSD_reversed.csv"
    path.write_text("\n".join([header, *reversed(rows[:500])]) + "\n")
    return str(path)


# (case id, argv, environment, exit code, text in the one line); {file} is a regular file,
# {config} an empty config file, {reversed} a tick file newest-first, {foo} a partial
# [instruments] entry.
CASES = [
    ("env-table-not-json", ["check-config"], {"TRAILD_TRAILING__VOLATILITY_MULTIPLIERS": "low"},
     1, "invalid configuration in the environment: environment "
        "TRAILD_TRAILING__VOLATILITY_MULTIPLIERS: not valid JSON"),
    ("env-bad-number", ["check-config"], {"TRAILD_DAEMON__HEARTBEAT_S": "often"},
     1, "daemon.heartbeat_s (from TRAILD_DAEMON__HEARTBEAT_S)"),
    ("mysql-url", ["check-config"], {"TRAILD_DATABASE__URL": "mysql://x"},
     1, "unsupported database URL 'mysql://x'"),
    ("partial-instrument", ["check-config", "--config", "{foo}"], {},
     1, 'instruments."CS.D.FOO.MINI.IP": not a built-in instrument, so it needs pip_size and '
        "tick_size (missing: tick_size)"),
    *[
        (f"state-dir-{cmd[0]}", [*cmd, "--config", "{config}"],
         {"TRAILD_DAEMON__STATE_DIR": "{file}/state"}, 73, "{file}")
        for cmd in (["migrate"], ["report"], [*TRADE, "--direction", "BUY", "--stop-pips", "10"],
                    ["halt"], ["resume"])
    ],
    *[
        (f"sqlite-path-{cmd[0]}", [*cmd, "--config", "{config}"],
         {"TRAILD_DATABASE__URL": "sqlite+aiosqlite:///{file}/traild.db"}, 73, "{file}")
        for cmd in (["migrate"], ["report"], [*TRADE, "--direction", "BUY", "--stop-pips", "10"])
    ],
    *[
        (f"sqlite-directory-{cmd[0]}", [*cmd, "--config", "{config}"],
         {"TRAILD_DATABASE__URL": "sqlite+aiosqlite:///{dir}"}, 1, "unable to open database file")
        for cmd in (["migrate"], ["report"])
    ],
    ("random-huge", ["backtest", "--ticks", "x.csv", "--random", "100000000000"], {},
     2, "argument --random: at most 100,000 entries per run"),
    ("random-large", ["backtest", "--ticks", "x.csv", "--random", "5000000"], {},
     2, "argument --random: at most 100,000 entries per run"),
    ("jobs-huge", ["backtest", "--ticks", "x.csv", "--random", "5", "--jobs", "100000"], {},
     2, "argument --jobs: at most 256 worker processes"),
    ("since-overflow", ["report", "--since", "99999999d"], {},
     2, "reaches before year 1; use 'all'"),
    ("buy-stop-above-limit",
     [*TRADE, "--direction", "BUY", "--stop", "1.2", "--limit", "1.0", "--config", "{config}"],
     {}, 1, "--stop 1.2 must be below --limit 1 for a BUY"),
    ("sell-stop-below-limit",
     [*TRADE, "--direction", "sell", "--stop", "1.0", "--limit", "1.2", "--config", "{config}"],
     {}, 1, "--stop 1 must be above --limit 1.2 for a SELL"),
    ("direction-unknown", [*TRADE, "--direction", "UP", "--stop-pips", "10"], {},
     2, "must be BUY or SELL (also LONG/SHORT; any case), not 'UP'"),
    ("simulate-reversed",
     ["simulate", "--ticks", "{reversed}", "--epic", EURUSD, "--direction", "BUY",
      "--stop-pips", "10", "--config", "{config}"],
     {}, 1, "reverse (newest-first) order"),
    ("demo-zero-seconds", ["demo", "--seconds", "0"], {},
     2, "argument --seconds: must be between 1 and 86400 seconds: '0'"),
]  # fmt: skip


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("TRAILD_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no ./config/traild.toml


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(("argv", "env", "code", "text"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_one_line_and_an_exit_code(
    tmp_path: Path,
    synthetic_eurusd: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    code: int,
    text: str,
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    config = tmp_path / "empty.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n')
    foo = tmp_path / "foo.toml"
    foo.write_text('[instruments."CS.D.FOO.MINI.IP"]\npip_size = 0.0001\n')
    a_dir = tmp_path / "a_dir.db"
    a_dir.mkdir()
    fill = {"file": str(a_file), "dir": str(a_dir), "config": str(config), "foo": str(foo)}
    if any("{reversed}" in a for a in argv):
        fill["reversed"] = _reversed_ticks(tmp_path, synthetic_eurusd)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(**fill))
    try:
        got = main([a.format(**fill) for a in argv])
    except SystemExit as exc:  # argparse
        got = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert got == code, err
    assert err.startswith("traild: error: ") and err.count("\n") == 1, err
    assert text.format(**fill) in err
    assert "Traceback" not in err


@pytest.mark.usefixtures("clean_env")
def test_a_list_setting_from_the_environment_may_be_comma_separated(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    monkeypatch.setenv(
        "TRAILD_TRAILING__FORCE_FIXED_TRAILING_PAIRS", f"{EURUSD}, CS.D.GBPUSD.MINI.IP"
    )
    assert main(["check-config"]) == 0
    out, err = capsys.readouterr()
    pairs = json.loads(out)["trailing"]["force_fixed_trailing_pairs"]
    assert pairs == [EURUSD, "CS.D.GBPUSD.MINI.IP"]
    # check-config names what it read
    assert "no config file (embedded defaults)" in err
    assert "environment TRAILD_TRAILING__FORCE_FIXED_TRAILING_PAIRS" in err
    monkeypatch.setenv("TRAILD_TRAILING__FORCE_FIXED_TRAILING_PAIRS", f'["{EURUSD}"]')
    assert main(["check-config"]) == 0
    assert json.loads(capsys.readouterr().out)["trailing"]["force_fixed_trailing_pairs"] == [EURUSD]


def test_every_option_of_every_command_is_described() -> None:
    import argparse

    from traild.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.option_strings and not action.help:
                missing.append(f"{path} {action.option_strings[0]}")

    walk(build_parser(), "traild")
    assert missing == []


@pytest.mark.usefixtures("clean_env")
def test_a_bug_in_run_is_one_daemon_failed_record_with_its_traceback_as_a_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import json

    from traild.daemon.app import Daemon

    async def broken(self: Daemon) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(Daemon, "run", broken)
    config = tmp_path / "traild.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path}"\n')
    assert main(["run", "--config", str(config)]) == 70
    err = capfd.readouterr().err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(records) == len(err.splitlines())  # nothing but JSON records
    failed = [r for r in records if r["event"] == "daemon.failed"]
    assert len(failed) == 1 and failed[0]["exit_code"] == 70
    assert "RuntimeError: boom" in failed[0]["traceback"]


def test_a_background_thread_error_is_one_line_or_silent_after_the_commands_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import threading

    from traild.cli import errors

    def crash() -> None:
        raise RuntimeError("Event loop is closed")

    def run_thread() -> None:
        t = threading.Thread(target=crash, name="worker")
        t.start()
        t.join()

    errors.install_thread_hook()
    run_thread()
    errors.flush_thread_errors()  # the command itself succeeded
    assert capsys.readouterr().err == (
        "traild: error: in worker: RuntimeError: Event loop is closed\n"
    )
    errors.install_thread_hook()
    run_thread()
    assert errors.report(OSError(13, "Permission denied", "/x")) == 73
    errors.flush_thread_errors()  # the command failed: its own line is the only one
    assert capsys.readouterr().err == (
        "traild: error: cannot use /x: Permission denied (check the path and its permissions)\n"
    )
