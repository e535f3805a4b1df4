"""``traild ig check``: log in, read markets, stream a while, list positions; ``--amend DEAL_ID``
re-sends one position's stop and limit unchanged and reports the amendment's round trip."""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from traild.cli.args import positive_float
from traild.core.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("ig", help="IG account tools")
    ig = p.add_subparsers(dest="ig_command", metavar="IG_COMMAND")
    ig.required = True
    c = ig.add_parser(
        "check",
        help="check an IG account: login, markets, streams (read-only unless --amend)",
    )
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
    c.add_argument(
        "--amend",
        metavar="DEAL_ID",
        help="re-send this position's current stop and limit unchanged (a no-op amendment) "
        "and report the PUT, its confirmation and their timings",
    )
    c.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    import trio

    from traild.config.settings import load

    settings = load(args.config)
    epics = settings.feed.epics
    if settings.broker.kind != "ig" or not epics:
        raise ConfigError(["ig check needs broker.kind = 'ig' and feed.epics (the markets)"])
    report = trio.run(_run, settings, epics, args.seconds, args.amend)
    _print(report)
    if report.failures:
        sys.stderr.write("traild: error: " + "; ".join(report.failures) + "\n")
        return 1
    return 0


async def _run(settings: Any, epics: list[str], seconds: float, amend: str | None) -> Any:
    from traild.adapters.ig.check import run_check
    from traild.core.errors import TraildError
    from traild.daemon.app import open_ig_broker

    try:
        async with open_ig_broker(settings, trade_stream=False, retry_login=False) as broker:
            return await run_check(broker, epics, seconds, amend)
    except* TraildError as group:  # one clear line, not a group of tasks' errors
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


def _print(report: Any) -> None:
    a = report.allowances
    print(f"account {report.account_id}")
    print(f"allowances/min: trading {a['trading']}, account {a['account']}, app {a['app']}")
    keepalive = report.keepalive_ms if report.keepalive_ms is not None else "-"
    print(f"streaming: {report.sessions} session(s), keep-alive {keepalive} ms (server's)")
    for m in report.markets:
        print(f"market {m.epic}: scale x{m.scale}, min stop {m.min_stop_pips} pips, {m.status}")
    for epic, seen in report.seen.items():
        latency = f"{statistics.median(seen.latency_ms):.0f} ms" if seen.latency_ms else "-"
        print(f"price {epic}: {seen.ticks} ticks, last {seen.bid}/{seen.ask}, latency {latency}")
        states = ", ".join(seen.states) or "none"
        print(f"price {epic}: DLG_FLAG seen {states}; stream prices {seen.scale}")
        if seen.bad_timestamp is not None:
            bad = seen.bad_timestamp
            print(f"price {epic}: TIMESTAMP not epoch ms: {bad!r} (dated by the local clock)")
    print(f"trade stream: {report.trade_updates} updates")
    for line in report.adopt:
        print(f"would adopt {line}")
    for deal, why in report.refused:
        print(f"would refuse {deal}: {why}")
    if report.amend is not None:
        _print_amend(report.amend)


def _print_amend(r: Any) -> None:
    print(
        f"amend {r.deal_id} ({r.epic}): PUT /positions/otc/{r.deal_id} v2 {dict(r.body)} -> "
        f"{r.put_status} dealReference {r.reference} in {r.put_ms:g} ms"
    )
    for source, seen in (("TRADE stream CONFIRMS", r.pushed), ("GET /confirms", r.polled)):
        if seen is None:
            print(f"amend {r.deal_id}: {source}: none")
            continue
        print(
            f"amend {r.deal_id}: {source}: {seen.deal_status} {seen.reason} ({seen.status}), "
            f"stop {seen.stop} limit {seen.limit}, after {seen.ms:g} ms"
        )
    print(f"amend {r.deal_id}: stop and limit unchanged at IG: {'yes' if r.unchanged else 'NO'}")
