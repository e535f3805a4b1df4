"""Shared fixtures: where the real FX data is, and generated ticks for tests that need only some."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.synthetic import EURUSD_2019, USDJPY_2019, write_synthetic_ticks

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real data sits beside the repository (``../shared/data/fx``); SHARED_FX_DATA points
# elsewhere (a git worktree, another checkout). REQUIRE_SHARED_FX_DATA=1 (CI) turns the
# skip into a failure, so a CI run without the data cannot pass by skipping.
DATA_ENV = "SHARED_FX_DATA"
REQUIRE_ENV = "REQUIRE_SHARED_FX_DATA"


# The parsed-tick cache (``traild.adapters.tickcache``) of the whole session, in processes the
# tests start too, is a temporary directory: no test writes into ~/.cache. XDG_CACHE_HOME as
# well, for the tests that clear every TRAILD_* variable (it moves matplotlib's font list too,
# which it rebuilds there once, in well under a second).
_CACHE_VARS = ("TRAILD_CACHE_DIR", "XDG_CACHE_HOME", "TRAILD_NO_CACHE")
_saved_env: dict[str, str | None] = {}
_cache_root: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    root = tempfile.mkdtemp(prefix="traild-tests-cache-")
    _cache_root.append(root)
    _saved_env.update({name: os.environ.get(name) for name in _CACHE_VARS})
    os.environ["TRAILD_CACHE_DIR"] = os.path.join(root, "traild", "ticks")
    os.environ["XDG_CACHE_HOME"] = root
    os.environ.pop("TRAILD_NO_CACHE", None)  # the suite runs with the cache, as users do


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for root in _cache_root:
        shutil.rmtree(root, ignore_errors=True)


def shared_data_path() -> Path:
    """Where the real FX data should be: ``$SHARED_FX_DATA`` or ``../shared/data/fx``."""
    configured = os.environ.get(DATA_ENV)
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / "fx"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real FX data (never copied into the repository); skips the test when it is absent."""
    path = shared_data_path().resolve()
    if not (path / "ticks").is_dir():
        reason = (
            f"needs the real FX data: {path}/ticks not found (put shared/data/fx beside the "
            f"repository or set {DATA_ENV})"
        )
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"{reason}; {REQUIRE_ENV} is set")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def synthetic_eurusd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10,000 generated EURUSD ticks from 2019-01-01 23:00 UTC (gzip'd CSV, every tick clean)."""
    folder = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_ticks(folder / "EURUSD_synthetic_2019.csv.gz", EURUSD_2019)


@pytest.fixture(scope="session")
def synthetic_usdjpy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10,000 generated USDJPY ticks from 2019-01-01 23:00 UTC."""
    folder = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_ticks(folder / "USDJPY_synthetic_2019.csv.gz", USDJPY_2019)
