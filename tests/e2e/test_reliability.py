"""Reliability of the real daemon: kill -9 at random points, broker faults, bad ticks."""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.daemon_helpers import (
    EPIC,
    TradeSpec,
    _env,
    add_trades,
    confirmed,
    db_rows,
    log_events,
    slice_ticks,
    trades,
    traild,
    write_config,
)

SPECS = [
    TradeSpec("BUY", 12, 40),
    TradeSpec("SELL", 12, 40),
    TradeSpec("BUY", 8, None, scalp=True),
    TradeSpec("SELL", 25, None),
]


@pytest.fixture
def ticks(tmp_path: Path, shared_data_dir: Path) -> Path:
    src = shared_data_dir / "ticks" / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
    return slice_ticks(src, tmp_path / "eurusd.csv", 10_000, start=2_000)


def _final(state: Path) -> list[tuple[Any, ...]]:
    return [
        (r["deal_id"], r["status"], r["sl_price"], r["exit_price"], r["exit_reason"], r["pnl_pips"])
        for r in trades(state)
    ]


def _stop_path(state: Path) -> dict[str, list[tuple[float, str]]]:
    return {
        r["deal_id"]: [(a["requested_level"], a["reason"]) for a in confirmed(state, r["id"])]
        for r in trades(state)
    }


def _never_loosened(state: Path) -> None:
    for row in trades(state):
        sign = 1 if row["direction"] == "BUY" else -1
        levels = [row["initial_sl_price"]] + [
            a["requested_level"] for a in confirmed(state, row["id"])
        ]
        assert all(sign * (b - a) > 0 for a, b in itertools.pairwise(levels)), levels
        assert row["sl_price"] == levels[-1]


def test_kill_9_at_random_points_loses_nothing_and_ends_like_an_uninterrupted_run(
    tmp_path: Path, ticks: Path
) -> None:
    template = tmp_path / "template"
    config = write_config(tmp_path / "template.toml", template, [ticks], [EPIC])
    add_trades(config, SPECS)
    baseline_state = tmp_path / "baseline"
    shutil.copytree(template, baseline_state)
    traild(
        "run", "--config", str(write_config(tmp_path / "b.toml", baseline_state, [ticks], [EPIC]))
    )
    expected_final, expected_path = _final(baseline_state), _stop_path(baseline_state)
    assert sum(len(p) for p in expected_path.values()) >= 5

    rng = random.Random(20261126)
    delays = [rng.uniform(0.5, 1.6) for _ in range(20)]

    def trial(n: int) -> int:
        """Kill -9 once at a random point, restart, compare; returns the kills made."""
        delay = delays[n]
        for attempt in range(6):
            state = tmp_path / f"trial{n}-{attempt}"
            shutil.copytree(template, state)
            cfg = write_config(tmp_path / f"t{n}-{attempt}.toml", state, [ticks], [EPIC])
            cmd = [sys.executable, "-m", "traild", "run", "--config", str(cfg)]
            proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(None)
            )
            time.sleep(delay)
            if proc.poll() is not None:  # finished before the kill: try an earlier point
                delay *= 0.6
                continue
            proc.kill()
            proc.wait(timeout=30)
            _never_loosened(state)
            restart = subprocess.run(
                cmd, capture_output=True, text=True, timeout=120, env=_env(None)
            )
            assert restart.returncode == 0, restart.stderr[-2000:]
            _never_loosened(state)
            assert _final(state) == expected_final, f"trial {n} killed after {delay:.2f}s"
            assert _stop_path(state) == expected_path, f"trial {n} killed after {delay:.2f}s"
            unfinished = db_rows(
                state, "select * from stop_amendment where state in ('pending', 'sent')"
            )
            assert unfinished == []
            return 1
        return 0

    with ThreadPoolExecutor(max_workers=2) as pool:
        kills = sum(pool.map(trial, range(20)))
    assert kills == 20  # every trial really was interrupted


def test_broker_faults_lose_no_protection(tmp_path: Path, ticks: Path) -> None:
    state = tmp_path / "state"
    faults = (
        "[broker]\nfault_reject_rate = 0.05\nfault_timeout_rate = 0.05\n"
        "fault_error_rate = 0.05\nfault_burst_rate = 0.03\nfault_seed = 3\n"
        "retry_base_s = 0.01\nretry_max_s = 0.05\n"
    )
    config = write_config(tmp_path / "traild.toml", state, [ticks], [EPIC], faults)
    add_trades(config, SPECS)
    run = traild("run", "--config", str(config))
    events = log_events(run.stderr)
    names = [e["event"] for e in events]
    assert names.count("stop.rejected") + names.count("stop.failed") >= 1
    attempts = db_rows(state, "select state, count(*) as n from stop_amendment group by state")
    by_state = {r["state"]: r["n"] for r in attempts}
    assert by_state.get("pending", 0) == 0 and by_state.get("sent", 0) == 0
    for row in trades(state):
        sign = 1 if row["direction"] == "BUY" else -1
        mfe = sign * (row["best_price"] - row["entry_price"]) / 0.0001
        if mfe >= 10 - 1e-9:
            assert sign * (row["sl_price"] - row["entry_price"]) >= 0.0001 - 1e-9, row
    _never_loosened(state)


def test_bad_ticks_are_rejected_and_counted_without_stopping_the_daemon(
    tmp_path: Path, ticks: Path
) -> None:
    lines = ticks.read_text().splitlines()
    header, body = lines[0], lines[1:]
    ts = body[10].split(",")[0]
    bad = [
        f"{ts},nan,1.38700",
        f"{ts},-1.38700,1.38710",
        f"{ts},1.38720,1.38700",
        "2014-05-01T00:00:00.000Z,1.38700,1.38710",
        f"{ts},13.8700,13.8710",
    ]
    dirty = tmp_path / "dirty.csv"
    dirty.write_text("\n".join([header, *body[:11], *bad, *body[11:]]) + "\n")
    state = tmp_path / "state"
    config = write_config(tmp_path / "traild.toml", state, [dirty], [EPIC])
    add_trades(config, SPECS[:2])
    run = traild("run", "--config", str(config))
    rejected = [e for e in log_events(run.stderr) if e["event"] == "tick.rejected"]
    assert sorted(e["reason"] for e in rejected) == [
        "non_finite",
        "non_positive",
        "out_of_order",
        "spike",
    ]
    assert all(r["status"] in ("open", "closed") for r in trades(state))
    _never_loosened(state)
