"""``traild run``, ``traild demo``, ``traild halt`` and ``traild resume``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from traild.app import EXIT_REFUSED, halt_path
from traild.core.errors import ConfigError, SchemaOutOfDate, StoreError
from traild.settings import load


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config", metavar="PATH")
    p.set_defaults(func=_run)

    p = sub.add_parser("demo", help="the daemon on embedded defaults with paper trades")
    p.add_argument("--seconds", type=_seconds, default=30.0, metavar="N")
    p.add_argument("--trades", type=_count, default=6, metavar="N")
    p.add_argument("--json-logs", action="store_true", help="show the daemon's JSON log lines")
    p.set_defaults(func=_demo)

    for name, on in (("halt", True), ("resume", False)):
        p = sub.add_parser(name, help=f"global kill switch {'on' if on else 'off'}")
        p.add_argument("--config", metavar="PATH")
        p.set_defaults(func=_halt, on=on)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000: {text!r}")
    return value


def _run(args: argparse.Namespace) -> int:
    import trio

    from traild.app import Daemon
    from traild.log import setup_logging

    setup_logging()
    from loguru import logger

    try:
        settings = load(args.config)
    except ConfigError as exc:
        logger.bind(event="config.rejected", problems=exc.problems).error(str(exc))
        return EXIT_REFUSED
    try:
        return trio.run(Daemon(settings, args.config).run)
    except SchemaOutOfDate as exc:
        logger.bind(event="daemon.refused", error=str(exc)).error(str(exc))
        sys.stderr.write(f"traild: error: {exc}\n")
        return EXIT_REFUSED
    except ConfigError as exc:  # the database's overrides do not validate with this file
        logger.bind(event="config.rejected", source="database", problems=exc.problems).error(
            str(exc)
        )
        sys.stderr.write(f"traild: error: {exc}\n")
        return EXIT_REFUSED
    except StoreError as exc:
        logger.bind(event="daemon.failed", error=str(exc)).error(str(exc))
        return 1


def _demo(args: argparse.Namespace) -> int:
    from traild.demo import run_demo

    return run_demo(args.seconds, args.trades, args.json_logs)


def _halt(args: argparse.Namespace) -> int:
    settings = load(args.config)
    path = halt_path(settings)
    if args.on:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("halted by `traild halt`\n")
        print(f"halt engaged ({path}); the running daemon stops amending within a second")
    else:
        path.unlink(missing_ok=True)
        print(f"halt released ({path}); amendments resume")
    return 0
