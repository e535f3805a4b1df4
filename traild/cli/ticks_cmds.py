"""``traild ticks export`` and ``traild report --counterfactual``.

The recorder (``[feed] record = true``) keeps every accepted tick; these commands read its
folder: export a period as a normal tick file, and print every closed live trade replayed
through the other trailing methods (counterfactuals, built by ``traild.reporting.assemble``).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from traild.cli import args as args_
from traild.cli.args import CONFIG_HELP, actions_of, add_since
from traild.config.settings import load
from traild.core.errors import DataError


def register(sub: Any) -> None:
    actions = actions_of(sub, "ticks", "recorded ticks ([feed] record = true)")
    p = actions.add_parser(
        "export",
        help="write a recorded period as a tick file (for backtest --ticks, simulate)",
        description="Write the ticks the daemon recorded for one epic between --since and "
        "--until (default: the end of the recording) as a ts_utc,bid,ask CSV, gzip'd when "
        "FILE ends in .gz.",
    )
    p.add_argument("--epic", required=True, help="the epic (or its symbol, e.g. EURUSD)")
    add_since(
        p, "Nd, Nh, Nm before now, an ISO date/time (UTC if no zone), or 'all'", required=True
    )
    p.add_argument("--until", type=args_.since, metavar="AGE|DATE", help="end (exclusive)")
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


def report_counterfactual(args: argparse.Namespace) -> int:
    """``traild report --counterfactual [--json]``."""
    from traild.cli.rollout_cmds import read_live
    from traild.reporting.assemble import counterfactual_report

    data = read_live(args.config, args.since)
    report, _ = counterfactual_report(data.settings, data.records)
    if args.json:
        print(json.dumps(report))
    else:
        print_counterfactuals(report, args.since)
    return 0


def print_counterfactuals(report: dict[str, Any], since: datetime | None) -> None:
    from traild.cli.rollout_cmds import print_paired

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
