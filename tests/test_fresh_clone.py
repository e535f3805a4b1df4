"""A fresh clone has no ``../shared``: the tests that need the real data say why they skip, the
rest run; CI (REQUIRE_SHARED_FX_DATA=1) cannot pass by skipping them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import DATA_ENV, REPO_ROOT, REQUIRE_ENV

# One test that needs the real data, one that runs on generated ticks.
SELECTED = [
    "tests/adapters/test_tickfiles.py::test_oanda_file_loads_every_row_as_columns",
    "tests/adapters/test_feeds.py::test_replay_emits_every_tick_of_a_file_in_order",
]


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (DATA_ENV, REQUIRE_ENV)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *SELECTED]
    return subprocess.run(
        cmd, cwd=REPO_ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_without_the_shared_data_a_data_test_is_skipped_with_its_reason(tmp_path: Path) -> None:
    run = _pytest(tmp_path, **{DATA_ENV: str(tmp_path / "nowhere")})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout
    assert "needs the real FX data" in run.stdout and "nowhere" in run.stdout


def test_ci_requiring_the_shared_data_fails_without_it(tmp_path: Path) -> None:
    run = _pytest(tmp_path, **{DATA_ENV: str(tmp_path / "nowhere"), REQUIRE_ENV: "1"})
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"{REQUIRE_ENV} is set" in run.stdout
