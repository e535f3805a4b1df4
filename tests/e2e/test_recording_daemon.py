"""The daemon over real ticks with the recorder on: the recording is exactly the accepted
ticks, and every closed trade gets counterfactuals whose replay of the method it used is the
live result (paper broker, no faults), trade by trade."""

from __future__ import annotations

import json
import os
import signal
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
    slice_ticks,
    trades,
    traild,
    write_config,
)
from traild.adapters.recorder import Recordings
from traild.adapters.tickfiles import guard_columns, load_ticks
from traild.config.settings import Settings
from traild.core.calculator import DYNAMIC, FIXED
from traild.core.conditions import TickGuard

# Trades with an alert trail on dynamic stages (the alert's ATR and regime); the others have
# no ATR at the replay's first tick and fall back to fixed (no_atr).
SPECS = [
    (TradeSpec("BUY", 12, 40), True),
    (TradeSpec("SELL", 12, 40), True),
    (TradeSpec("BUY", 8, None, scalp=True), False),
    (TradeSpec("SELL", 6, 30, scalp=True), True),
    (TradeSpec("BUY", 20, 15), False),
    (TradeSpec("SELL", 15, 25), False),
]
EXTRA = "[trailing]\nenable_dynamic_trailing = true\n[feed]\nrecord = true\nrecord_days = 5\n"
# the config's [feed] header is replaced by EXTRA: its keys join that section


@pytest.fixture
def eurusd(tmp_path: Path, shared_data_dir: Path) -> Path:
    src = shared_data_dir / "ticks" / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
    return slice_ticks(src, tmp_path / "eurusd.csv", 40_000)


def _add(config: Path, state: Path) -> list[str]:
    traild("migrate", "--config", str(config))
    with closing(sqlite3.connect(state / "traild.db")) as conn, conn:
        conn.execute(
            "INSERT INTO alert_history (id, epic, atr, volatility_regime, market_regime, "
            f"market_session) VALUES (1, '{EPIC}', 0.0006, 'normal', 'trending', 'asian')"
        )
    deals = []
    for spec, alert in SPECS:
        extra = ["--alert-id", "1"] if alert else []
        out = traild("trade", "add", "--config", str(config), *spec.args(), *extra)
        deals.append(out.stdout.strip())
    return deals


def test_recording_replays_to_the_accepted_ticks_and_counterfactuals_match_live(
    tmp_path: Path, eurusd: Path
) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "traild.toml", state, [eurusd], [EPIC])
    config.write_text(config.read_text().replace("[feed]\n", EXTRA, 1))
    deals = _add(config, state)
    traild("run", "--config", str(config))

    # the recording, exported as a normal tick file, is exactly the ticks the guard accepts
    out = tmp_path / "export.csv.gz"
    traild(
        "ticks",
        "export",
        "--config",
        str(config),
        "--epic",
        "EURUSD",
        "--since",
        "all",
        "-o",
        str(out),
    )
    source = load_ticks(eurusd)
    keep, _ = guard_columns(source, TickGuard(Settings().guard_params(0.0001)))
    got = load_ticks(out)
    assert got.ts_ms.tolist() == source.ts_ms[keep].tolist()
    assert got.bid.tolist() == source.bid[keep].tolist()
    assert got.ask.tolist() == source.ask[keep].tolist()

    report = json.loads(
        traild(
            "report", "--config", str(config), "--since", "all", "--counterfactual", "--json"
        ).stdout
    )
    rows = {r["deal_id"]: r for r in trades(state)}
    closed = [d for d in deals if rows[d]["status"] == "closed"]
    assert len(closed) >= 4
    by_deal = {t["deal_id"]: t for t in report["trades"]}
    assert set(by_deal) == set(closed)  # every closed trade has its counterfactuals
    methods = set()
    for deal in closed:
        t, row = by_deal[deal], rows[deal]
        methods.add(row["trailing_calculation_method"])
        assert set(t["counterfactuals"]) == {"fixed", "fixed+lock", "dynamic+lock"}
        same = "dynamic+lock" if row["trailing_calculation_method"] == DYNAMIC else "fixed+lock"
        for replay in (t["model"], t["counterfactuals"][same]):
            assert replay["pnl_pips"] == row["pnl_pips"]
            assert replay["exit_reason"] == row["exit_reason"]
            assert replay["exit_price"] == pytest.approx(row["exit_price"], abs=1e-9)
        assert t["live_minus_model_pips"] == 0.0
    assert methods == {DYNAMIC, FIXED}
    gate = report["paired_gate"]["pooled"]
    assert gate["trades"] == len(closed) and gate["verdict"] == "undecidable"
    assert gate["days_needed"] >= 1  # one trading day: at least ten are needed

    text = traild("report", "--config", str(config), "--since", "all", "--counterfactual")
    assert "paired gate" in text.stdout and "undecidable" in text.stdout
    status = traild("rollout", "status", "--config", str(config))
    assert "paired gate" in status.stdout
    status_json = json.loads(traild("rollout", "status", "--config", str(config), "--json").stdout)
    assert status_json["gate_basis"] == "paired"
    assert status_json["paired_gate"]["rollout_gate"]["trades"] == len(closed)
    page = tmp_path / "report.html"
    traild("report", "--config", str(config), "--since", "all", "--html", str(page))
    assert 'id="counterfactuals"' in page.read_text()


def test_a_stop_signal_to_the_process_group_keeps_the_last_batch(
    tmp_path: Path, eurusd: Path
) -> None:
    """SIGTERM to the whole process group (Ctrl-C, systemd's control-group kill) reaches the
    writer process too: it ignores it, the daemon drains and writes its last batch, and the
    recording is exactly the accepted ticks up to the stop."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "traild.toml", state, [eurusd], [EPIC])
    text = config.read_text().replace("[feed]\n", "[feed]\nrecord = true\nspeed = 20.0\n", 1)
    config.write_text(text.replace("stop_at_end = true", "stop_at_end = false"))
    traild("migrate", "--config", str(config))
    cmd = [sys.executable, "-m", "traild", "run", "--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env(None), start_new_session=True)  # fmt: skip
    events: list[dict[str, object]] = []
    assert proc.stderr is not None
    with proc.stderr:
        for line in proc.stderr:
            if not line.startswith("{"):
                continue
            events.append(json.loads(line))
            if events[-1]["event"] == "heartbeat" and int(events[-1]["ticks"]) > 100:  # type: ignore[call-overload]
                os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    names = [e["event"] for e in events]
    assert "daemon.stopping" in names and "ticks.record_failed" not in names
    source = load_ticks(eurusd)
    keep, _ = guard_columns(source, TickGuard(Settings().guard_params(0.0001)))
    got = Recordings(state / "ticks").columns(EPIC)
    n = len(got)
    assert n > 100
    assert got.ts_ms.tolist() == source.ts_ms[keep][:n].tolist()
    assert got.bid.tolist() == source.bid[keep][:n].tolist()
