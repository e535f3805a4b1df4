"""The default number of backtest worker processes follows the work, not the core count."""

from __future__ import annotations

from traild.backtest.engine import auto_jobs
from traild.backtest.paths import EVENT, FAST


def test_small_work_runs_in_one_process_whatever_the_cores() -> None:
    assert auto_jobs(3_000 * 3, FAST, cores=16) == 1
    assert auto_jobs(30_000 * 3, FAST, cores=2) == 1
    assert auto_jobs(500, EVENT, cores=8) == 1


def test_large_work_uses_the_cores_but_never_more() -> None:
    assert auto_jobs(1_000_000, FAST, cores=4) == 4
    assert auto_jobs(10_000, EVENT, cores=2) == 2
    assert auto_jobs(10_000, EVENT, cores=64) == 5
