"""Real-time recalculation end to end: a trade entered in a calm hour whose volatility regime
moves two levels (normal -> extreme) is recalculated once by the daemon, which logs and stores
it, and ends exactly as ``traild simulate --realtime-recalc`` over the same ticks."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.daemon_helpers import (
    EPIC,
    confirmed,
    db_rows,
    log_events,
    trades,
    traild,
    write_config,
)

RECALC = """
[trailing]
enable_dynamic_trailing = true
realtime_recalc = true
atr_clamp = "ladder"
[conditions]
bar_minutes = 1
atr_period = 3
regime_lookback = 20
regime_min_history = 5
"""
SIM = ["--epic", EPIC, "--direction", "BUY", "--stop-pips", "20", "--json"]
CALM = ["--atr-pips", "8", "--regime", "normal", "--session", "asian"]


def _calm_then_surge(path: Path) -> Path:
    """Twelve quiet one-minute bars (a 0.4-pip zigzag), then a 25-pip surge in one bar, on to
    +32 and back down, a pip a second, to +4 in the next: the surge bar is an extreme ATR."""
    t0 = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)
    mids: list[tuple[datetime, float]] = []
    for i in range(12 * 12):
        mids.append(
            (t0 + timedelta(seconds=5 * i), 1.1 + 0.00004 * (i % 2) + 0.00001 * (i // 7 % 3))
        )
    surge = t0 + timedelta(minutes=12)
    mids += [(surge + timedelta(seconds=5 * k), 1.1 + 0.0025 * (k + 1) / 12) for k in range(12)]
    later = t0 + timedelta(minutes=13)
    mids += [(later + timedelta(seconds=5 * k), 1.1025 + 0.0007 * (k + 1) / 6) for k in range(6)]
    mids += [(later + timedelta(seconds=30 + k), 1.1032 - 0.0001 * (k + 1)) for k in range(28)]
    lines = ["ts_utc,bid,ask"]
    for ts, mid in mids:
        stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        lines.append(f"{stamp},{mid - 0.00003:.5f},{mid + 0.00003:.5f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _add_trade_with_calm_alert(config: Path, state: Path) -> str:
    traild("migrate", "--config", str(config))
    with sqlite3.connect(state / "traild.db") as conn:
        conn.execute(
            "insert into alert_history (id, epic, atr, volatility_regime, market_session, "
            "created_at) values (1, ?, 0.0008, 'normal', 'asian', '2024-03-05 02:00:00')",
            (EPIC,),
        )
    add = ["trade", "add", "--config", str(config), "--alert-id", "1", *SIM[:-1]]
    return traild(*add).stdout.strip()


def test_daemon_recalculates_once_and_ends_as_simulate_with_recalculation(
    tmp_path: Path,
) -> None:
    ticks = _calm_then_surge(tmp_path / "eurusd.csv")
    state = tmp_path / "state"
    config = write_config(tmp_path / "traild.toml", state, [ticks], [EPIC], RECALC)
    _add_trade_with_calm_alert(config, state)
    run = traild("run", "--config", str(config))

    sim = json.loads(
        traild("simulate", "--ticks", str(ticks), *SIM, *CALM, "--config", str(config)).stdout
    )
    [row] = trades(state)
    assert row["entry_price"] == sim["entry"] and row["status"] == "closed"
    assert [(a["requested_level"], a["reason"]) for a in confirmed(state, row["id"])] == [
        (a["to"], a["reason"]) for a in sim["amendments"]
    ]
    assert (row["exit_price"], row["exit_reason"], row["pnl_pips"]) == (
        sim["exit"]["price"],
        sim["exit"]["reason"],
        sim["exit"]["pnl_pips"],
    )
    # once, normal -> extreme, at the close of the surge bar; the stored stages are the new ones
    [recalc] = sim["recalculations"]
    assert (recalc["old_regime"], recalc["new_regime"]) == ("normal", "extreme")
    [stored] = db_rows(state, "select * from stage_recalculation")
    assert (stored["old_volatility_regime"], stored["new_volatility_regime"]) == (
        "normal",
        "extreme",
    )
    assert stored["recalculated_at"].startswith("2024-03-05 02:13:00")
    assert json.loads(row["calculated_stages"])["stages"] == recalc["stages"]
    assert json.loads(stored["old_stages"])["stages"] == recalc["old_stages"]
    [logged] = [e for e in log_events(run.stderr) if e["event"] == "stages.recalculated"]
    assert (logged["old_regime"], logged["new_regime"]) == ("normal", "extreme")
    assert logged["stages"] == recalc["stages"] and logged["trade_id"] == row["id"]

    # the recalculation mattered: without it stage 2 of the calm stages locks +13.5 instead
    off = write_config(
        tmp_path / "off.toml",
        state,
        [ticks],
        [EPIC],
        RECALC.replace("realtime_recalc = true", "realtime_recalc = false"),
    )
    plain = json.loads(
        traild("simulate", "--ticks", str(ticks), *SIM, *CALM, "--config", str(off)).stdout
    )
    assert "recalculations" not in plain
    assert plain["exit"]["pnl_pips"] > sim["exit"]["pnl_pips"]
    assert plain["amendments"][-1]["reason"] == "stage2"

    report = json.loads(
        traild("report", "--since", "all", "--config", str(config), "--json").stdout
    )
    assert report["recalculations"] == {"trades": 1, "total": 1, "shifts": {"normal->extreme": 1}}
    text = traild("report", "--since", "all", "--config", str(config)).stdout
    assert "recalculated in real time: 1 trade(s), 1 time(s): normal->extreme 1" in text


def test_kill_9_after_the_recalculation_then_a_restart_ends_as_simulate(tmp_path: Path) -> None:
    """A restart must not lose or redo a recalculation: the daemon is killed (-9) right after
    ``stages.recalculated``, restarted on the same replay, and the trade still ends exactly as
    ``simulate --realtime-recalc`` says, with one recalculation stored."""
    from tests.e2e.test_reliability import _Run

    ticks = _calm_then_surge(tmp_path / "eurusd.csv")
    state = tmp_path / "state"
    # broker latency: in a speed-0 replay every amendment holds the feed (lockstep, outcomes
    # unchanged), so the run is still going when the kill comes
    config = write_config(
        tmp_path / "traild.toml",
        state,
        [ticks],
        [EPIC],
        RECALC + "[broker]\nlatency_ms = 1000\n",
    )
    _add_trade_with_calm_alert(config, state)
    cmd = [sys.executable, "-m", "traild", "run", "--config", str(config)]
    first = _Run(cmd, tmp_path / "first.log")
    deadline = time.monotonic() + 60
    while not first.count("stages.recalculated") and first.proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert first.kill(), "the replay ended before the kill"
    assert first.count("trade.closed") == 0
    second = _Run(cmd, tmp_path / "second.log")
    assert second.proc.wait(timeout=120) == 0
    second.reader.join(timeout=30)

    sim = json.loads(
        traild("simulate", "--ticks", str(ticks), *SIM, *CALM, "--config", str(config)).stdout
    )
    [row] = trades(state)
    assert row["status"] == "closed"
    assert (row["exit_price"], row["exit_reason"], row["pnl_pips"]) == (
        sim["exit"]["price"],
        sim["exit"]["reason"],
        sim["exit"]["pnl_pips"],
    )
    assert [(a["requested_level"], a["reason"]) for a in confirmed(state, row["id"])] == [
        (a["to"], a["reason"]) for a in sim["amendments"]
    ]
    [recalc] = sim["recalculations"]
    stored = db_rows(state, "select * from stage_recalculation")
    assert [(s["old_volatility_regime"], s["new_volatility_regime"]) for s in stored] == [
        ("normal", "extreme")
    ]
    assert json.loads(row["calculated_stages"])["stages"] == recalc["stages"]
