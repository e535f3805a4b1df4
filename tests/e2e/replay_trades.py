"""Trades handed over as open ``trade_log`` rows whose ``opened_at`` lies inside a replay, and what
``traild simulate`` says each must end as (the yardstick of the reliability tests)."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.e2e.daemon_helpers import EPIC
from traild.backtest.simulate import SimulationRequest, simulate
from traild.config.settings import load
from traild.core.messages import Direction

PIP = 0.0001


@dataclass(frozen=True)
class OpenTrade:
    deal_id: str
    direction: str
    entry: float
    stop: float
    limit: float | None
    opened_at: str  # ISO, a tick time of the replay

    def insert_sql(self, initial: bool = True) -> str:
        """The INSERT a trading app runs; ``initial=False``: without ``initial_sl_price``, as
        the README's hand-over documents (traild records it at adoption)."""
        limit = "NULL" if self.limit is None else repr(self.limit)
        initial_column = "initial_sl_price, " if initial else ""
        initial_value = f"{self.stop!r}, " if initial else ""
        return (
            "INSERT INTO trade_log (deal_id, epic, direction, size, entry_price, sl_price, "
            f"{initial_column}limit_price, status, opened_at, is_scalp_trade) VALUES "
            f"('{self.deal_id}', '{EPIC}', '{self.direction}', 1.0, {self.entry!r}, "
            f"{self.stop!r}, {initial_value}{limit}, 'open', '{self.opened_at}', false)"
        )


def open_trades(ticks: Path, count: int, seed: int, within: float = 0.6) -> list[OpenTrade]:
    """``count`` trades opened at random ticks of the first ``within`` of the file."""
    with ticks.open() as fh:
        rows = list(csv.reader(fh))[1:]
    rng = random.Random(seed)
    picks = sorted(rng.sample(range(1, int(len(rows) * within)), count))
    out = []
    for n, i in enumerate(picks):
        ts, bid, ask = rows[i]
        buy = rng.random() < 0.5
        entry = float(ask) if buy else float(bid)
        sign = 1 if buy else -1
        stop = round(entry - sign * rng.choice([6, 8, 10, 12, 15]) * PIP, 5)
        limit_pips = rng.choice([None, 12, 20, 30])
        limit = None if limit_pips is None else round(entry + sign * limit_pips * PIP, 5)
        stamp = datetime.fromisoformat(ts.replace("Z", "+00:00")).isoformat()
        out.append(OpenTrade(f"OPEN-{n:03d}", "BUY" if buy else "SELL", entry, stop, limit, stamp))
    return out


def utc(text: str) -> datetime:
    """A stored time (ISO, with or without an offset; SQLite keeps UTC) as aware UTC."""
    ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def simulated(config: Path, ticks: Path, trade: OpenTrade) -> dict[str, Any]:
    """``traild simulate`` of ``trade`` over ``ticks`` (in process: the same code path)."""
    request = SimulationRequest(
        ticks=str(ticks),
        epic=EPIC,
        direction=Direction(trade.direction),
        stop=trade.stop,
        limit=trade.limit,
        entry=trade.entry,
        at=utc(trade.opened_at),
    )
    return simulate(load(str(config)), request)


def outcome_of_row(row: dict[str, Any]) -> tuple[Any, ...]:
    """A trade_log row as (status, exit reason, exit price, pnl, final stop)."""
    exit_price = None if row["exit_price"] is None else round(row["exit_price"], 5)
    return (row["status"], row["exit_reason"], exit_price, row["pnl_pips"], row["sl_price"])


def outcome_of_simulation(sim: dict[str, Any], trade: OpenTrade) -> tuple[Any, ...]:
    exit_ = sim["exit"]
    stop = sim["amendments"][-1]["to"] if sim["amendments"] else trade.stop
    if exit_["reason"] == "end_of_data":
        return ("open", None, None, None, stop)
    return ("closed", exit_["reason"], round(exit_["price"], 5), exit_["pnl_pips"], stop)
