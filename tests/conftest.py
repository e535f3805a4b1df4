"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real FX data, ``../shared/data/fx`` beside the repository (never copied into it)."""
    path = (REPO_ROOT / ".." / "shared" / "data" / "fx").resolve()
    if not (path / "ticks").is_dir():
        pytest.fail(
            f"shared FX data not found: looked for {path}/ticks "
            "(the repository must sit beside shared/, as in the workplace and CI)"
        )
    return path
