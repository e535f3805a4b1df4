"""``traild ig check``: log in, read markets, stream a while, list positions; never amends."""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from traild.cli.args import positive_float
from traild.core.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("ig", help="IG account tools")
    ig = p.add_subparsers(dest="ig_command", metavar="IG_COMMAND")
    ig.required = True
    c = ig.add_parser("check", help="check an IG account (read-only): login, markets, streams")
    c.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $TRAILD_CONFIG, else ./config/traild.toml if present)",
    )
    c.add_argument(
        "--seconds",
        type=positive_float,
        default=10.0,
        metavar="N",
        help="how long to stream prices and trade events (default 10)",
    )
    c.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    import trio

    from traild.settings import load

    settings = load(args.config)
    epics = settings.feed.epics
    if settings.broker.kind != "ig" or not epics:
        raise ConfigError(["ig check needs broker.kind = 'ig' and feed.epics (the markets)"])
    report = trio.run(_run, settings, epics, args.seconds)
    _print(report)
    return 0


async def _run(settings: Any, epics: list[str], seconds: float) -> Any:
    from traild.adapters.ig.check import run_check
    from traild.app import open_ig_broker
    from traild.core.errors import TraildError

    try:
        async with open_ig_broker(settings, trade_stream=False, login_backoff=None) as broker:
            return await run_check(broker, epics, seconds)
    except* TraildError as group:  # one clear line, not a group of tasks' errors
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


def _print(report: Any) -> None:
    a = report.allowances
    print(f"account {report.account_id}")
    print(f"allowances/min: trading {a['trading']}, account {a['account']}, app {a['app']}")
    for m in report.markets:
        print(f"market {m.epic}: scale x{m.scale}, min stop {m.min_stop_pips} pips, {m.status}")
    for epic, seen in report.seen.items():
        latency = f"{statistics.median(seen.latency_ms):.0f} ms" if seen.latency_ms else "-"
        print(f"price {epic}: {seen.ticks} ticks, last {seen.bid}/{seen.ask}, latency {latency}")
    print(f"trade stream: {report.trade_updates} updates")
    for line in report.adopt:
        print(f"would adopt {line}")
    for deal, why in report.refused:
        print(f"would refuse {deal}: {why}")
