"""The live reports assembled from what the database and the recorder hold.

The CLI reads the effective settings and the trade records from the database; from them this
module builds what ``traild rollout status``, ``traild report --counterfactual`` and
``traild report --html`` print or write: the live trades, the counterfactual replays of the
closed trades over the recorded ticks, the paired gate's input and the HTML page. NumPy and the
backtest load only when a function needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from traild.config.settings import Settings
from traild.core.messages import TradeRecord

if TYPE_CHECKING:
    from traild.reporting.counterfactual import CounterfactualSet
    from traild.reporting.live import LiveTrade
    from traild.reporting.paired import PairedPolicy, PairedTrade

    PairedInput = tuple[list[PairedTrade], PairedPolicy]


def live_trades_of(settings: Settings, records: list[TradeRecord]) -> list[LiveTrade]:
    """The closed trades of ``records`` the gates and the comparison count."""
    from traild.reporting.live import live_trades

    s = settings
    return live_trades(records, s.instrument_table(), s.trailing.profit_lock_trigger_pips)


def rollout_report(settings: Settings, records: list[TradeRecord]) -> dict[str, Any]:
    """``traild rollout status``: stage and gate per pair, with the paired gate when ticks
    were recorded."""
    from traild.reporting.rollout import rollout_status

    paired = paired_input(settings, records)
    return rollout_status(settings, live_trades_of(settings, records), records, paired)


def counterfactuals(settings: Settings, records: list[TradeRecord]) -> CounterfactualSet:
    """Every closed trade of ``records`` replayed over the recorded ticks."""
    from traild.adapters.recorder import Recordings
    from traild.backtest.variants import DEFAULT_VARIANTS
    from traild.reporting.counterfactual import Replayer

    replayer = Replayer(
        settings.calculator_params(),
        settings.ladder_policy(),
        settings.stage_config,
        settings.instrument_table(),
        ",".join([DEFAULT_VARIANTS, *settings.rollout.counterfactual_variants]),
        settings.broker.min_stop_distance_pips,
        settings.regime_tables,
    )
    return replayer.run(records, Recordings(settings.recording_path()))


def paired_input(settings: Settings, records: list[TradeRecord]) -> PairedInput | None:
    """The paired trades and policy of ``rollout status`` (None: nothing recorded)."""
    from traild.reporting.paired import paired_trades
    from traild.reporting.rollout import paired_policy

    if not settings.recording_path().is_dir():
        return None
    return paired_trades(counterfactuals(settings, records)), paired_policy(settings)


def counterfactual_report(
    settings: Settings, records: list[TradeRecord]
) -> tuple[dict[str, Any], PairedInput]:
    """``traild report --counterfactual``: the replays per trade and per pair with the paired
    gate over them; and the paired gate's input."""
    from traild.reporting.paired import paired_gate, paired_trades
    from traild.reporting.rollout import paired_policy

    cf = counterfactuals(settings, records)
    paired = paired_trades(cf), paired_policy(settings)
    report = _replays(cf)
    report["paired_gate"] = paired_gate(*paired)
    return report, paired


def _replays(cf: CounterfactualSet) -> dict[str, Any]:
    skipped: dict[str, int] = {}
    for s in cf.skipped:
        skipped[s.reason] = skipped.get(s.reason, 0) + 1
    pairs: dict[str, Any] = {}
    for epic in sorted({t.trade.epic for t in cf.trades}):
        mine = [t for t in cf.trades if t.trade.epic == epic]
        pairs[epic] = {
            "trades": len(mine),
            "live_pips": _mean([t.live_pnl for t in mine]),
            "model_pips": _mean([t.model.pnl_pips for t in mine]),
            "live_minus_model_pips": _mean([t.live_pnl - t.model.pnl_pips for t in mine]),
            "variants": {v: _mean([t.variants[v].pnl_pips for t in mine]) for v in cf.variants},
        }
    return {
        "variants": list(cf.variants),
        "replayed": len(cf.trades),
        "skipped": dict(sorted(skipped.items())),
        "pairs": pairs,
        "trades": [t.as_dict() for t in cf.trades],
    }


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 2) + 0.0 if values else 0.0


def html_page(
    settings: Settings,
    records: list[TradeRecord],
    trades: Sequence[LiveTrade],
    comparison: dict[str, Any] | None,
    since: datetime | None,
) -> str:
    """``traild report --html``: the trade report, the rollout status, the comparison with a
    backtest (when given) and, when ticks were recorded, the counterfactual section."""
    from traild.reporting.html import render
    from traild.reporting.html_counterfactual import counterfactual_section
    from traild.reporting.rollout import rollout_status
    from traild.reporting.trades import build_report

    report = build_report(records, settings.instrument_table())
    paired: PairedInput | None = None
    extra: tuple[str, ...] = ()
    if settings.recording_path().is_dir():
        replays, paired = counterfactual_report(settings, records)
        extra = (counterfactual_section(replays),)
    status = rollout_status(settings, trades, records, paired)
    return render(report, status, trades, comparison, since, extra)
