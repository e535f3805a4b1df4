"""The daemon on bad input: a poisoned replay feed trails exactly like the clean one, and
everything a restart cannot fix ends in one structured record and exit 78 before READY."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.daemon_helpers import (
    EPIC,
    TradeSpec,
    add_trades,
    confirmed,
    log_events,
    trades,
    traild,
    write_config,
)
from tests.poison import FUTURE_LINE, poisoned, spikes
from traild.backtest.simulate import SimulationRequest, simulate
from traild.config.settings import Settings
from traild.core.messages import Direction

PIP = 0.0001
SPECS = [TradeSpec("BUY", 15, 40), TradeSpec("SELL", 15, 40), TradeSpec("BUY", 6, None)]


def test_a_poisoned_replay_trails_exactly_like_simulate_on_the_clean_file(
    tmp_path: Path, synthetic_eurusd: Path
) -> None:
    clean = synthetic_eurusd
    dirty = poisoned(
        clean,
        tmp_path / "EURUSD_poisoned.csv",
        {
            500: [FUTURE_LINE],
            2000: spikes(clean, 2000, 600 * PIP, 3),
            3000: spikes(clean, 3000, -150 * PIP, 1),
            4000: ["2019-01-01T20:00:00.000Z,1.1460,1.1461"],
        },
    )
    state = tmp_path / "state"
    config = write_config(tmp_path / "traild.toml", state, [dirty], [EPIC])
    deals = add_trades(config, SPECS)
    run = traild("run", "--config", str(config))
    rows = {r["deal_id"]: r for r in trades(state)}
    for spec, deal in zip(SPECS, deals, strict=True):
        sim = _simulate(clean, spec)
        row = rows[deal]
        assert (row["entry_price"], row["initial_sl_price"]) == (sim["entry"], sim["initial_stop"])
        assert [a["requested_level"] for a in confirmed(state, row["id"])] == [
            a["to"] for a in sim["amendments"]
        ]
        if sim["exit"]["reason"] == "end_of_data":
            assert row["status"] == "open"
        else:
            assert (row["exit_price"], row["exit_reason"]) == (
                sim["exit"]["price"],
                sim["exit"]["reason"],
            )
    rejected = [e for e in log_events(run.stderr) if e["event"] == "tick.rejected"]
    reasons = sorted(e["reason"] for e in rejected)
    assert reasons == ["future_timestamp", "out_of_order", "spike", "spike", "spike", "spike"]


def _simulate(ticks: Path, spec: TradeSpec) -> dict[str, Any]:
    """``traild simulate`` in-process (its JSON object) on embedded defaults."""
    request = SimulationRequest(
        ticks=str(ticks),
        epic=spec.epic,
        direction=Direction.parse(spec.direction),
        stop_pips=spec.stop_pips,
        limit_pips=spec.limit_pips,
        is_scalp=spec.scalp,
    )
    return simulate(Settings(), request)


def _corrupt_gzip(tmp_path: Path) -> Path:
    path = tmp_path / "EURUSD_corrupt.csv.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    return path


@pytest.mark.parametrize(
    ("case", "env", "event", "message"),
    [
        ("missing replay file", {}, "daemon.failed", "cannot read tick file"),
        ("corrupt replay file", {}, "daemon.failed", "corrupt gzip data"),
        (
            "a table env var that is not JSON",
            {"TRAILD_TRAILING__VOLATILITY_MULTIPLIERS": "low=1"},
            "config.rejected",
            "TRAILD_TRAILING__VOLATILITY_MULTIPLIERS",
        ),
        (
            "an unsupported database URL",
            {"TRAILD_DATABASE__URL": "mysql://x"},
            "config.rejected",
            "unsupported database URL",
        ),
        (
            "a state directory that cannot be created",
            {"TRAILD_DAEMON__STATE_DIR": "{file}/state"},
            "daemon.failed",
            "Not a directory",
        ),
    ],
)
def test_run_exits_78_with_one_record_before_ready(
    tmp_path: Path, case: str, env: dict[str, str], event: str, message: str
) -> None:
    state = tmp_path / "state"
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    replay = {
        "missing replay file": tmp_path / "EURUSD_missing.csv",
        "corrupt replay file": _corrupt_gzip(tmp_path),
    }.get(case, tmp_path / "EURUSD_ok.csv")
    if not replay.name.endswith(("missing.csv", ".gz")):
        replay.write_text("ts_utc,bid,ask\n2019-01-02T00:00:00Z,1.1,1.1001\n")
    config = write_config(tmp_path / "traild.toml", state, [replay], [EPIC])
    env = {k: v.format(file=a_file) for k, v in env.items()}
    run = traild("run", "--config", str(config), env=env, check=False, timeout=60)
    assert run.returncode == 78, run.stderr
    assert "Traceback" not in run.stderr
    events = log_events(run.stderr)  # every line is a JSON record
    assert len(events) == len([ln for ln in run.stderr.splitlines() if ln.strip()])
    assert [e["event"] for e in events if e["event"] == event] == [event]
    assert message in next(e for e in events if e["event"] == event)["message"]
    assert not {"daemon.ready", "trade.adopted"} & {e["event"] for e in events}
