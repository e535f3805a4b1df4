"""The daemon as systemd runs it: sd_notify, SIGHUP reload (valid and invalid), kill switch
to fixed, SIGTERM drain."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.daemon_helpers import TradeSpec, _env, add_trades, db_rows

EPICS = ["CS.D.EURUSD.MINI.IP", "CS.D.USDJPY.MINI.IP"]


def _config(path: Path, state: Path, dynamic: bool, extra: str = "") -> Path:
    path.write_text(
        f"[trailing]\nenable_dynamic_trailing = {'true' if dynamic else 'false'}\n"
        '[feed]\nkind = "synthetic"\n'
        f"synthetic_epics = {json.dumps(EPICS)}\n"
        "synthetic_ticks_per_second = 100.0\nsynthetic_interval_ms = 1000.0\n"
        f"[daemon]\nstate_dir = {json.dumps(str(state))}\nheartbeat_s = 1.0\n" + extra
    )
    return path


class Daemon:
    """A `traild run` subprocess with its stderr records and sd_notify datagrams collected."""

    def __init__(self, config: Path, notify: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(notify))
        self.sock.settimeout(0.2)
        self.notes: list[str] = []
        self.records: list[dict[str, Any]] = []
        env = _env({"NOTIFY_SOCKET": str(notify)})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "traild", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._threads = [
            threading.Thread(target=self._read_logs, daemon=True),
            threading.Thread(target=self._read_notes, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_logs(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.startswith("{"):
                self.records.append(json.loads(line))

    def _read_notes(self) -> None:
        while self.proc.poll() is None or self.sock:
            try:
                self.notes.append(self.sock.recv(4096).decode())
            except TimeoutError:
                if self.proc.poll() is not None:
                    return
            except OSError:
                return

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) waiting for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; notes={self.notes}")
            time.sleep(0.05)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event") == name]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        for t in self._threads:
            t.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.sock.close()
        return code


def _methods(state: Path) -> set[str]:
    return {
        r["trailing_calculation_method"]
        for r in db_rows(state, "select trailing_calculation_method from trade_log")
    }


def test_sighup_reload_rejects_invalid_config_and_kill_switch_moves_trades_to_fixed(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    config = _config(tmp_path / "traild.toml", state, dynamic=True)
    specs = [
        TradeSpec("BUY", 15, 40, epic=EPICS[0]),
        TradeSpec("SELL", 15, 40, epic=EPICS[1]),
        TradeSpec("SELL", 8, 20, scalp=True, epic=EPICS[0]),
    ]
    add_trades(config, specs)
    with sqlite3.connect(state / "traild.db") as conn:  # the signal behind each trade
        for i, epic in enumerate(EPICS):
            pip = 0.01 if "JPY" in epic else 0.0001
            conn.execute(
                "insert into alert_history (id, epic, atr, volatility_regime, "
                "market_session, created_at) values (?, ?, ?, 'high', 'london', "
                "'2024-01-01 00:00:00')",
                (i + 1, epic, 15 * pip),
            )
        conn.execute(
            "update trade_log set alert_id = case when epic like '%JPY%' then 2 else 1 end"
        )
    daemon = Daemon(config, tmp_path / "notify.sock")
    try:
        daemon.wait("READY=1", lambda: any("READY=1" in n for n in daemon.notes))
        daemon.wait("three dynamic trades", lambda: len(daemon.events("stages.calculated")) == 3)
        # the log line comes first; the stored method lands with the next write batch
        daemon.wait("dynamic stored", lambda: _methods(state) == {"dynamic_volatility"})

        config.write_text(config.read_text() + "\n[trailing.bogus]\nx = 1\n")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait("config.rejected", lambda: bool(daemon.events("config.rejected")))
        problems = daemon.events("config.rejected")[0]["problems"]
        assert any("trailing.bogus" in p for p in problems)
        assert daemon.proc.poll() is None
        daemon.wait(
            "READY after the rejected reload",
            lambda: sum("READY=1" in n for n in daemon.notes) >= 2,
        )
        reloading = [n for n in daemon.notes if "RELOADING=1" in n]
        assert reloading and "MONOTONIC_USEC=" in reloading[0]

        _config(config, state, dynamic=False)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait("config.reloaded", lambda: bool(daemon.events("config.reloaded")))
        assert "trailing.enable_dynamic_trailing" in daemon.events("config.reloaded")[0]["changed"]
        daemon.wait("every trade on fixed", lambda: _methods(state) == {"fixed"})
        switched = [e for e in daemon.events("stages.fallback") if e.get("reason") == "disabled"]
        assert len({e["trade_id"] for e in switched}) == 3
    finally:
        code = daemon.stop()
    assert code == 0
    assert any("STOPPING=1" in n for n in daemon.notes)
    assert daemon.events("daemon.stopping")


def test_halt_command_engages_the_global_kill_switch(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = _config(tmp_path / "traild.toml", state, dynamic=False)
    add_trades(config, [TradeSpec("BUY", 15, 40, epic=EPICS[0])])
    daemon = Daemon(config, tmp_path / "notify.sock")
    try:
        daemon.wait("ready", lambda: bool(daemon.events("daemon.ready")))
        halt = subprocess.run(
            [sys.executable, "-m", "traild", "halt", "--config", str(config)],
            capture_output=True,
            text=True,
            env=_env(None),
            timeout=60,
        )
        assert halt.returncode == 0
        daemon.wait("killswitch.engaged", lambda: bool(daemon.events("killswitch.engaged")))
        sent_at_halt = len(daemon.events("stop.requested"))
        beats = len(daemon.events("heartbeat"))
        daemon.wait(
            "two heartbeats while halted", lambda: len(daemon.events("heartbeat")) >= beats + 2
        )
        assert len(daemon.events("stop.requested")) == sent_at_halt
        beat = daemon.events("heartbeat")[-1]
        assert beat["halted"] is True
        # what the actors processed is reported apart from the ticks that came in
        assert min(beat["actor_ticks"], beat["ticks_dispatched"], beat["ticks_coalesced"]) >= 0
        subprocess.run(
            [sys.executable, "-m", "traild", "resume", "--config", str(config)],
            capture_output=True,
            text=True,
            env=_env(None),
            timeout=60,
            check=True,
        )
        daemon.wait("released", lambda: bool(daemon.events("killswitch.released")))
    finally:
        assert daemon.stop() == 0
    assert not os.path.exists(state / "HALT")
