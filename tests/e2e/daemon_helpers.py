"""Driving the real daemon as a subprocess: configs, trades, the database afterwards."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EPIC = "CS.D.EURUSD.MINI.IP"


def traild(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m traild ARGS`` and return the completed process."""
    proc = subprocess.run(
        [sys.executable, "-m", "traild", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(env),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"traild {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILD_")}
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra or {})
    return env


def slice_ticks(source: Path, dest: Path, rows: int, start: int = 0) -> Path:
    """Write rows ``start:start+rows`` of a (gzip) tick file to ``dest`` (header kept)."""
    with gzip.open(source, "rt") as fh, dest.open("w") as out:
        out.write(fh.readline())
        for i, line in enumerate(fh):
            if i >= start + rows:
                break
            if i >= start:
                out.write(line)
    return dest


def write_config(
    path: Path, state: Path, files: list[Path], epics: list[str], extra: str = ""
) -> Path:
    path.write_text(
        '[feed]\nkind = "replay"\n'
        f"files = {json.dumps([str(f) for f in files])}\n"
        f"epics = {json.dumps(epics)}\n"
        "stop_at_end = true\n"
        f"[daemon]\nstate_dir = {json.dumps(str(state))}\npersist_best_every_s = 0\n"
        "heartbeat_s = 1.0\n" + extra
    )
    return path


@dataclass(frozen=True)
class TradeSpec:
    direction: str
    stop_pips: float
    limit_pips: float | None = None
    scalp: bool = False
    epic: str = EPIC

    def args(self) -> list[str]:
        out = [
            "--epic",
            self.epic,
            "--direction",
            self.direction,
            "--stop-pips",
            str(self.stop_pips),
        ]
        if self.limit_pips is not None:
            out += ["--limit-pips", str(self.limit_pips)]
        if self.scalp:
            out.append("--scalp")
        return out

    def simulate_args(self) -> list[str]:
        return self.args()


def add_trades(config: Path, specs: list[TradeSpec]) -> list[str]:
    traild("migrate", "--config", str(config))
    return [
        traild("trade", "add", "--config", str(config), *s.args()).stdout.strip() for s in specs
    ]


def db_rows(state: Path, sql: str) -> list[dict[str, Any]]:
    with sqlite3.connect(state / "traild.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql)]


def trades(state: Path) -> list[dict[str, Any]]:
    return db_rows(state, "select * from trade_log order by id")


def confirmed(state: Path, trade_id: int) -> list[dict[str, Any]]:
    return db_rows(
        state,
        "select * from stop_amendment where state = 'confirmed' and "
        f"trade_id = {int(trade_id)} order by id",
    )


def log_events(stderr: str) -> list[dict[str, Any]]:
    """The daemon's JSON log records (one object per line)."""
    out = []
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("<") and ">" in line[:4]:
            line = line[line.index(">") + 1 :]
        if line.startswith("{"):
            out.append(json.loads(line))
    return out
