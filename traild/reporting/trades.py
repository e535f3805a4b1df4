"""The trade report of ``traild report`` (SPEC §7): the trades opened since a time, counted by
status, calculation method and fallback reason, one entry per trade, and the outcomes of the
closed ones by method. Built from the store's records; the CLI prints it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from traild.backtest.simulate import iso
from traild.core.errors import InstrumentError
from traild.core.instruments import Instrument, InstrumentTable
from traild.core.messages import StageRecalculation, TradeRecord, TradeStatus

UNASSIGNED = "unassigned"  # a trade not adopted yet has no calculation method


def build_report(
    trades: list[TradeRecord],
    table: InstrumentTable,
    recalcs: Sequence[StageRecalculation] = (),
) -> dict[str, Any]:
    """SPEC §7 ``report --json``: counts, methods, fallback reasons and one entry per trade;
    plus ``recalculations`` when real-time recalculation changed any of these trades."""
    status = Counter(t.status for t in trades)
    report = {
        "open": status[TradeStatus.OPEN],  # managed: an actor is trailing it
        "closed": status[TradeStatus.CLOSED],
        "pending": status[TradeStatus.PENDING],  # recorded, not filled/adopted yet
        "unmanaged": status[TradeStatus.UNMANAGED],  # given up: its broker stop stays
        "methods": dict(Counter(t.trailing_calculation_method or UNASSIGNED for t in trades)),
        "fallback_reasons": dict(Counter(t.fallback_reason for t in trades if t.fallback_reason)),
        "trades": [_trade_entry(t, table) for t in trades],
    }
    ids = {t.id for t in trades}
    mine = [r for r in recalcs if r.trade_id in ids]
    if mine:
        report["recalculations"] = {
            "trades": len({r.trade_id for r in mine}),
            "total": len(mine),
            "shifts": dict(Counter(_shift(r) for r in mine)),
        }
    return report


def _shift(r: StageRecalculation) -> str:
    return f"{r.old_volatility_regime or 'normal'}->{r.new_volatility_regime}"


def _trade_entry(trade: TradeRecord, table: InstrumentTable) -> dict[str, Any]:
    try:
        instrument: Instrument | None = table.resolve(trade.epic)
    except InstrumentError:  # a trading-app row for a market traild does not know: as stored
        instrument = None

    def price(value: float | None) -> float | None:
        if value is None or instrument is None:
            return value
        return instrument.to_price(instrument.to_ticks(value))

    return {
        "deal_id": trade.deal_id,
        "epic": trade.epic,
        "direction": trade.direction.value,
        "status": trade.status.value,
        "entry_price": price(trade.entry_price),
        "sl_price": price(trade.sl_price),
        "exit_price": price(trade.exit_price),
        "exit_reason": trade.exit_reason,
        "pnl_pips": None if trade.pnl_pips is None else round(trade.pnl_pips, 2),
        "method": trade.trailing_calculation_method,
        "fallback_reason": trade.fallback_reason,
        "opened_at": iso(trade.opened_at),
        "closed_at": iso(trade.closed_at),
    }


def outcomes(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Closed trades by method: count, wins, total and mean pips (dynamic against fixed)."""
    out: dict[str, dict[str, float]] = {}
    for t in report["trades"]:
        if t["status"] != TradeStatus.CLOSED.value or t["pnl_pips"] is None:
            continue
        row = out.setdefault(t["method"] or UNASSIGNED, {"closed": 0, "wins": 0, "pips": 0.0})
        row["closed"] += 1
        row["wins"] += t["pnl_pips"] > 0
        row["pips"] += t["pnl_pips"]
    return out
