"""``traild ticks export``, ``traild report --counterfactual`` and the paired rollout gate.

The recorder (``[feed] record = true``) keeps every accepted tick; these commands read its
folder: export a period as a normal tick file, and replay every closed live trade through the
other trailing methods (counterfactuals) for the report and ``traild rollout status``.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traild.cli.store_cmds import CONFIG_HELP, _since
from traild.config.settings import Settings, load
from traild.core.errors import DataError
from traild.core.messages import TradeRecord

if TYPE_CHECKING:  # the reporting modules load numpy and the backtest: only when used
    from traild.reporting.counterfactual import CounterfactualSet


def register(sub: Any) -> None:
    ticks = sub.add_parser("ticks", help="recorded ticks ([feed] record = true)")
    actions = ticks.add_subparsers(dest="ticks_command", metavar="ACTION")
    actions.required = True
    p = actions.add_parser(
        "export",
        help="write a recorded period as a tick file (for backtest --ticks, simulate)",
        description="Write the ticks the daemon recorded for one epic between --since and "
        "--until (default: the end of the recording) as a ts_utc,bid,ask CSV, gzip'd when "
        "FILE ends in .gz.",
    )
    p.add_argument("--epic", required=True, help="the epic (or its symbol, e.g. EURUSD)")
    p.add_argument(
        "--since", required=True, type=_since, metavar="AGE|DATE",
        help="Nd, Nh, Nm before now, an ISO date/time (UTC if no zone), or 'all'",
    )  # fmt: skip
    p.add_argument("--until", type=_since, metavar="AGE|DATE", help="end (exclusive)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="tick file to write")
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.set_defaults(func=_export)


def add_report_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--counterfactual",
        action="store_true",
        help="replay every closed trade over its recorded ticks in the other methods",
    )


def _export(args: argparse.Namespace) -> int:
    from traild.adapters.recorder import Recordings

    settings = load(args.config)
    recordings = Recordings(settings.recording_path())
    epic = recordings.resolve(args.epic)
    if args.until is not None and args.since is not None and args.until <= args.since:
        raise DataError("--until must be after --since")
    target = Path(args.output)
    try:
        count = recordings.export(epic, args.since, args.until, target)
    except OSError as exc:
        raise DataError(f"cannot write {target}: {exc.strerror or exc}") from None
    if not count:
        raise DataError(f"no recorded ticks of {epic} in that period")
    print(f"wrote {count} ticks of {epic} to {target}")
    return 0


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


def paired_input(settings: Settings, records: list[TradeRecord]) -> tuple[Any, Any] | None:
    """The paired trades and policy of ``rollout status`` (None: nothing recorded)."""
    from traild.reporting.paired import paired_trades

    if not settings.recording_path().is_dir():
        return None
    return paired_trades(counterfactuals(settings, records)), paired_policy(settings)


def html_extras(
    settings: Settings, records: list[TradeRecord]
) -> tuple[tuple[Any, Any] | None, tuple[str, ...]]:
    """For ``report --html``: the paired input of the rollout status and the counterfactual
    section (nothing when no ticks were recorded)."""
    from traild.reporting.html_counterfactual import counterfactual_section
    from traild.reporting.paired import paired_gate, paired_trades

    if not settings.recording_path().is_dir():
        return None, ()
    cf = counterfactuals(settings, records)
    policy = paired_policy(settings)
    report = counterfactual_report(cf)
    report["paired_gate"] = paired_gate(paired_trades(cf), policy)
    return (paired_trades(cf), policy), (counterfactual_section(report),)


def paired_policy(settings: Settings) -> Any:
    from traild.reporting.live import Bootstrap
    from traild.reporting.paired import PairedPolicy

    r = settings.rollout
    boot = Bootstrap(r.bootstrap_samples, r.confidence, r.bootstrap_seed)
    return PairedPolicy(r.improvement_threshold, r.min_trades, r.min_days, boot)


def report_counterfactual(args: argparse.Namespace) -> int:
    """``traild report --counterfactual [--json]``."""
    from traild.cli.rollout_cmds import read_live
    from traild.reporting.paired import paired_gate, paired_trades

    data = read_live(args.config, args.since)
    cf = counterfactuals(data.settings, data.records)
    report = counterfactual_report(cf)
    report["paired_gate"] = paired_gate(paired_trades(cf), paired_policy(data.settings))
    if args.json:
        print(json.dumps(report))
    else:
        print_counterfactuals(report, args.since)
    return 0


def counterfactual_report(cf: CounterfactualSet) -> dict[str, Any]:
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


def print_counterfactuals(report: dict[str, Any], since: datetime | None) -> None:
    skipped = ", ".join(f"{k} {v}" for k, v in report["skipped"].items()) or "none"
    window = "all time" if since is None else f"since {since.isoformat()}"
    print(f"closed trades replayed ({window}): {report['replayed']}; not replayed: {skipped}")
    names = report["variants"]
    head = "".join(f" {v:>13}" for v in names)
    print(
        f"\n{'deal_id / pair':<40} {'method':<19} {'live':>7} {'model':>7}{head} {'live-model':>10}"
    )
    for t in report["trades"]:
        cells = "".join(f" {t['counterfactuals'][v]['pnl_pips']:>13.2f}" for v in names)
        print(
            f"{t['deal_id']:<40} {t['method'] or '-':<19} {t['live']['pnl_pips']:>7.2f}"
            f" {t['model']['pnl_pips']:>7.2f}{cells} {t['live_minus_model_pips']:>10.2f}"
        )
    for epic, p in report["pairs"].items():
        cells = "".join(f" {p['variants'][v]:>13.2f}" for v in names)
        label = f"{epic} (mean of {p['trades']})"
        print(
            f"{label:<40} {'':<19} {p['live_pips']:>7.2f} {p['model_pips']:>7.2f}{cells}"
            f" {p['live_minus_model_pips']:>10.2f}"
        )
    print_paired(report["paired_gate"])


def print_paired(gate: dict[str, Any], which: str = "pooled") -> None:
    """The paired gate's verdict (``which``: ``pooled`` over every pair, or ``rollout_gate``:
    over the pairs on dynamic) and, per pair, one line."""
    g = gate[which]
    d, m = g["difference_pips"], g["margin_pips"]
    over = g.get("over", "every pair")
    over = over if isinstance(over, str) else ", ".join(over)
    print(
        f"\npaired gate ({over}: dynamic+lock minus fixed+lock on the same {g['trades']} "
        f"trades, {g['trading_days']} trading days): {g['verdict']} — {g['why']}"
    )
    if d["value"] is not None:
        print(
            f"  dynamic {g['dynamic_expectancy_pips']:+.2f},"
            f" fixed {g['fixed_expectancy_pips']:+.2f} pips/trade;"
            f" difference {d['value']:+.2f} [{_cell(d['low'])}, {_cell(d['high'])}];"
            f" margin over fixed + {gate['threshold_pct']:g} %: {m['value']:+.2f}"
            f" [{_cell(m['low'])}, {_cell(m['high'])}]"
        )
    if g["verdict"] == "undecidable" and g["trades_needed"] is not None:
        print(
            f"  a verdict needs about {g['trades_needed']} more trades "
            f"(~{g['days_needed']} trading days at this pace)"
        )
    for epic, p in gate["pairs"].items():
        print(
            f"  {epic:<22} {p['trades']:>5} trades {p['trading_days']:>4} days"
            f"  difference {_cell(p['difference_pips']['value'])}"
            f"  margin {_cell(p['margin_pips']['value'])}  {p['verdict']}"
        )


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 2) + 0.0 if values else 0.0


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"
