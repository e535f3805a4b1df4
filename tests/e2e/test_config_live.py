"""A running daemon picks up ``traild config set`` within a poll interval, like a reload."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.e2e.daemon_helpers import TradeSpec, add_trades, db_rows, traild
from tests.e2e.test_signals import EPICS, Daemon, _config


def _methods(state: Path) -> dict[str, tuple[str, str | None]]:
    rows = db_rows(
        state, "select epic, trailing_calculation_method, fallback_reason from trade_log"
    )
    return {r["epic"]: (r["trailing_calculation_method"], r["fallback_reason"]) for r in rows}


def test_database_allowlist_change_moves_a_pair_out_of_the_rollout_while_running(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    config = _config(tmp_path / "traild.toml", state, dynamic=True)
    add_trades(
        config, [TradeSpec("BUY", 15, 40, epic=EPICS[0]), TradeSpec("SELL", 15, 40, epic=EPICS[1])]
    )
    with sqlite3.connect(state / "traild.db") as conn:
        for i, epic in enumerate(EPICS):
            pip = 0.01 if "JPY" in epic else 0.0001
            conn.execute(
                "insert into alert_history (id, epic, atr, volatility_regime, market_session, "
                "created_at) values (?, ?, ?, 'normal', 'london', '2024-01-01 00:00:00')",
                (i + 1, epic, 10 * pip),
            )
        conn.execute(
            "update trade_log set alert_id = case when epic like '%JPY%' then 2 else 1 end"
        )
    daemon = Daemon(config, tmp_path / "notify.sock")
    try:
        daemon.wait("two dynamic trades", lambda: len(daemon.events("stages.calculated")) == 2)
        traild(
            "config", "set", "trailing", "dynamic_trailing_pairs=EURUSD", "--by", "ops",
            "--config", str(config),
        )  # fmt: skip
        daemon.wait(
            "config.reloaded from the database",
            lambda: any(e.get("source") == "database" for e in daemon.events("config.reloaded")),
        )
        reloaded = next(e for e in daemon.events("config.reloaded") if e["source"] == "database")
        assert reloaded["changed"] == ["trailing.dynamic_trailing_pairs"]
        assert reloaded["config_version"] == 1
        daemon.wait(
            "a heartbeat on version 1",
            lambda: any(e.get("config_version") == 1 for e in daemon.events("heartbeat")),
        )
        daemon.wait(
            "USDJPY out of the rollout",
            lambda: _methods(state)[EPICS[1]] == ("fixed", "not_in_rollout"),
        )
        assert _methods(state)[EPICS[0]] == ("dynamic_volatility", None)
    finally:
        code = daemon.stop()
    assert code == 0
    history = db_rows(state, "select key, changed_by from trailing_config_audit")
    assert history == [{"key": "dynamic_trailing_pairs", "changed_by": "ops"}]
