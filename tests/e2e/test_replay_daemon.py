"""The real daemon over real ticks with the paper broker: it agrees with `traild simulate`
trade by trade, finalises closed trades, and logs what it does."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.e2e.daemon_helpers import (
    EPIC,
    TradeSpec,
    _env,
    add_trades,
    confirmed,
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
    TradeSpec("SELL", 6, 30, scalp=True),
    TradeSpec("BUY", 20, 15),
]


@pytest.fixture
def eurusd(tmp_path: Path, shared_data_dir: Path) -> Path:
    src = shared_data_dir / "ticks" / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
    return slice_ticks(src, tmp_path / "eurusd.csv", 40_000)


def test_replay_run_agrees_with_simulate_trade_by_trade(tmp_path: Path, eurusd: Path) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "traild.toml", state, [eurusd], [EPIC])
    deals = add_trades(config, SPECS)
    run = traild("run", "--config", str(config))
    rows = {r["deal_id"]: r for r in trades(state)}
    checked_rungs = 0
    for spec, deal in zip(SPECS, deals, strict=True):
        row = rows[deal]
        sim = json.loads(
            traild("simulate", "--ticks", str(eurusd), *spec.simulate_args(), "--json").stdout
        )
        assert row["entry_price"] == sim["entry"]
        assert row["initial_sl_price"] == sim["initial_stop"]
        amendments = confirmed(state, row["id"])
        assert [(a["requested_level"], a["reason"]) for a in amendments] == [
            (a["to"], a["reason"]) for a in sim["amendments"]
        ]
        assert [a["created_at"][:23] for a in amendments] == [
            a["ts"][:23].replace("T", " ") for a in sim["amendments"]
        ]
        checked_rungs += len(amendments)
        if sim["exit"]["reason"] == "end_of_data":
            assert row["status"] == "open"
            assert row["sl_price"] == (
                sim["amendments"][-1]["to"] if sim["amendments"] else sim["initial_stop"]
            )
        else:
            assert row["status"] == "closed"
            assert row["exit_price"] == sim["exit"]["price"]
            assert row["exit_reason"] == sim["exit"]["reason"]
            assert row["pnl_pips"] == sim["exit"]["pnl_pips"]
            assert row["closed_at"][:23] == sim["exit"]["ts"][:23].replace("T", " ")
    assert checked_rungs >= 6  # the slice does move the ladder
    events = log_events(run.stderr)
    names = {e["event"] for e in events}
    assert {
        "daemon.started",
        "daemon.ready",
        "trade.adopted",
        "stages.fallback",
        "stop.requested",
        "stop.confirmed",
        "trade.closed",
        "daemon.stopping",
    } <= names
    for e in events:
        if e["event"] in ("stop.confirmed", "trade.adopted", "trade.closed"):
            assert {"trade_id", "deal_id", "epic"} <= e.keys()


def test_profit_lock_lands_for_every_trade_that_reached_ten_pips(
    tmp_path: Path, eurusd: Path
) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "traild.toml", state, [eurusd], [EPIC])
    add_trades(config, SPECS)
    traild("run", "--config", str(config))
    for row in trades(state):
        sign = 1 if row["direction"] == "BUY" else -1
        locks = [a for a in confirmed(state, row["id"]) if a["reason"] == "profit_lock"]
        reached = (
            row["best_price"] is not None
            and round(sign * (row["best_price"] - row["entry_price"]) / 0.0001, 6) >= 10
        )
        if reached:
            assert row["profit_lock_applied_at"] is not None or any(
                sign * (a["requested_level"] - row["entry_price"]) > 0.0001
                for a in confirmed(state, row["id"])
            )
            assert sign * (row["sl_price"] - row["entry_price"]) >= 0.0001 - 1e-9
        else:
            assert not locks


def test_run_refuses_to_start_on_invalid_config_or_unmigrated_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[trailing]\nprofit_lock_pips = 20\n[nonsense]\nx = 1\n")
    refused = traild("run", "--config", str(bad), check=False)
    assert refused.returncode == 78  # EX_CONFIG: systemd's RestartPreventExitStatus
    rejected = [e for e in log_events(refused.stderr) if e["event"] == "config.rejected"]
    assert rejected and any("nonsense" in p for p in rejected[0]["problems"])
    assert "Traceback" not in refused.stderr

    state = tmp_path / "state"
    fresh = tmp_path / "fresh.toml"
    fresh.write_text(f'[daemon]\nstate_dir = "{state}"\n')
    unmigrated = traild("run", "--config", str(fresh), check=False)
    assert unmigrated.returncode == 78
    assert "traild migrate" in unmigrated.stderr
    assert "Traceback" not in unmigrated.stderr


def test_speed_0_replay_without_trades_keeps_heartbeats_and_adopts_a_trade_added_after_ready(
    tmp_path: Path, shared_data_dir: Path
) -> None:
    """The replay feed must not starve the heartbeat and the store poll (SQLite's worker
    threads need the GIL): a trade inserted after READY is adopted while the replay runs."""
    ticks = shared_data_dir / "ticks" / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
    state = tmp_path / "state"
    config = write_config(tmp_path / "traild.toml", state, [ticks], [EPIC])
    config.write_text(config.read_text().replace("heartbeat_s = 1.0", "heartbeat_s = 0.2"))
    traild("migrate", "--config", str(config))
    cmd = [sys.executable, "-m", "traild", "run", "--config", str(config)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(None)
    )
    names: list[str] = []
    assert proc.stderr is not None
    with proc.stderr:
        for line in proc.stderr:
            if not line.startswith("{"):
                continue
            names.append(json.loads(line)["event"])
            if names[-1] == "daemon.ready":
                with closing(sqlite3.connect(state / "traild.db")) as conn, conn:
                    conn.execute(
                        "INSERT INTO trade_log (deal_id, epic, direction, size, status, "
                        "stop_pips, is_scalp_trade) "
                        f"VALUES ('LATE-1', '{EPIC}', 'BUY', 1.0, 'pending', 10, false)"
                    )
    assert proc.wait(timeout=120) == 0
    finished = names.index("feed.finished")
    assert "heartbeat" in names[:finished]
    assert "trade.adopted" in names[:finished]


def test_rate_limit_pauses_in_a_speed_0_replay_are_not_a_stale_feed(
    tmp_path: Path, shared_data_dir: Path
) -> None:
    """The replay's clock is its own: while traild holds the feed back (a rate-limit pause),
    the feed is not stale and the watchdog is not withheld."""
    src = shared_data_dir / "ticks" / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
    ticks = slice_ticks(src, tmp_path / "eurusd.csv", 6_000, start=2_000)
    state = tmp_path / "state"
    extra = "[broker]\nfault_burst_rate = 0.3\nfault_seed = 5\nretry_max_s = 0.6\n"
    config = write_config(tmp_path / "traild.toml", state, [ticks], [EPIC], extra)
    text = config.read_text().replace(
        "stop_at_end = true", "stop_at_end = true\nstale_after_s = 0.3"
    )
    config.write_text(text.replace("heartbeat_s = 1.0", "heartbeat_s = 0.1"))
    add_trades(config, SPECS)
    events = [e["event"] for e in log_events(traild("run", "--config", str(config)).stderr)]
    assert events.count("broker.rate_limited") >= 2
    assert "feed.stale" not in events
