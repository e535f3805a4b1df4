"""Start-up: each command imports only what it needs (behaviour, not timing: the figures are
in ``bench/bench_startup.py``), and the lazily listed commands are the ones the modules define."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.importtime import traild_imports
from traild.cli import _COMMANDS, build_parser

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"numpy", "trio", "sqlalchemy", "matplotlib", "httpx", "alembic"}


def _imported(tmp_path: Path, *argv: str) -> set[str]:
    """Top-level packages and traild modules ``python -m traild ARGV`` imports."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TRAILD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["TRAILD_DAEMON__STATE_DIR"] = str(tmp_path / "state")
    return traild_imports([*argv, "--config", os.devnull], env, tmp_path)[0]


def test_version_imports_no_command_module(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "traild", "--version"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.startswith("traild ")
    names = {ln.rsplit("|", 1)[-1].strip() for ln in run.stderr.splitlines() if "|" in ln}
    light_only = HEAVY | {"pydantic", "pydantic_settings", "loguru"}
    assert not {n.split(".")[0] for n in names} & light_only
    assert not {
        n
        for n in names
        if n.endswith("_cmds") or n.startswith(("traild.config.settings", "traild.daemon.app"))
    }


@pytest.mark.parametrize(
    "argv",
    [("calc", "--epic", "EURUSD", "--atr-pips", "8"), ("halt",), ("resume",)],
    ids=["calc", "halt", "resume"],
)
def test_light_commands_import_neither_the_daemon_nor_numpy_nor_the_store(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    names = _imported(tmp_path, *argv)
    assert not names & HEAVY
    assert not {
        n for n in names if n.startswith(("traild.daemon.app", "traild.runtime", "traild.adapters"))
    }


def test_the_command_table_lists_exactly_what_each_module_registers() -> None:
    for module, commands in _COMMANDS:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        assert [(a.dest, a.help) for a in sub._choices_actions] == list(commands), module


def test_help_lists_every_command_without_importing_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser("").parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for _, commands in _COMMANDS:
        for name, help_ in commands:
            assert name in out and help_ in out


@pytest.mark.parametrize(
    "argv",
    [
        ("calc", "--epic", "EURUSD", "--atr-pips", "8"),
        ("halt",),
        ("resume",),
        ("config", "show", "EURUSD"),
        ("config", "history"),
    ],
    ids=["calc", "halt", "resume", "config-show", "config-history"],
)
def test_on_a_sqlite_database_the_short_commands_skip_the_async_store(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    """With a migrated SQLite database they read (and ``halt`` writes) the configuration
    tables through ``config_blocking``: no trio, no aiosqlite thread, no ORM, no Alembic."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TRAILD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["TRAILD_DAEMON__STATE_DIR"] = str(tmp_path / "state")

    def traild(*words: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
        flags = ["-X", "importtime"] if importtime else []
        return subprocess.run(
            [sys.executable, *flags, "-m", "traild", *words, "--config", os.devnull],
            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip

    assert traild("migrate").returncode == 0
    run = traild(*argv, importtime=True)
    assert run.returncode == 0, run.stderr[-2000:]
    names = {
        line.rsplit("|", 1)[-1].strip()
        for line in run.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    async_stack = {"trio", "trio_asyncio", "aiosqlite", "asyncpg", "alembic", "numpy", "matplotlib"}
    assert not {n.split(".")[0] for n in names} & async_stack
    assert not names & {"sqlalchemy.orm", "sqlalchemy.ext.asyncio", "traild.adapters.store.models"}
    assert "traild.adapters.store.config_blocking" in names  # it did read the database
    if argv == ("halt",):
        assert "daemon.halt set in the database" in run.stdout
        history = traild("config", "history", "--json")
        assert '"daemon.halt"' in history.stdout and '"new": true' in history.stdout
