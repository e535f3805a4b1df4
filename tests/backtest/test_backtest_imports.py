"""What ``traild backtest`` imports (issue 24; behaviour, not timing): its parser (and so
``--help``) neither NumPy, matplotlib nor the settings' pydantic models; a whole run nothing of
the daemon (its app, runtime, store, HTTP client or async framework)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.importtime import traild_imports

REPO_ROOT = Path(__file__).resolve().parents[2]
DAEMON_PACKAGES = {"trio", "sqlalchemy", "httpx", "alembic"}
DAEMON_MODULES = ("traild.daemon", "traild.runtime", "traild.app", "traild.adapters.store")


def _imported(tmp_path: Path, *argv: str) -> tuple[set[str], str]:
    """Top-level packages and traild modules ``python -X importtime -m traild ARGV`` imports,
    and its stdout."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return traild_imports(list(argv), env, tmp_path, timeout=300)


def test_the_backtest_parser_imports_no_numpy_matplotlib_or_settings(tmp_path: Path) -> None:
    names, out = _imported(tmp_path, "backtest", "--help")
    assert "--no-cache" in out and "fixed,fixed+lock,dynamic+lock" in out
    assert not names & {"numpy", "matplotlib", "pydantic", "pydantic_settings", *DAEMON_PACKAGES}
    assert not {n for n in names if n.startswith(("traild.backtest.", "traild.config."))} - {
        "traild.backtest.names"
    }


def test_a_backtest_run_imports_nothing_of_the_daemon(
    tmp_path: Path, synthetic_eurusd: Path, empty_config: Path
) -> None:
    out = tmp_path / "out"
    argv = ["--ticks", str(synthetic_eurusd), "--random", "30", "--seed", "1"]
    names, _ = _imported(
        tmp_path, "backtest", *argv, "--out", str(out), "--config", str(empty_config)
    )
    assert (out / "trades.csv").is_file() and (out / "by_regime.png").is_file()
    assert {"numpy", "matplotlib"} <= names  # the run itself did happen here
    assert not names & DAEMON_PACKAGES
    assert not {n for n in names if n.startswith(DAEMON_MODULES)}
