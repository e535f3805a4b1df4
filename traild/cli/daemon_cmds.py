"""``traild run``, ``traild demo``, ``traild halt`` and ``traild resume``."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any

from traild.cli.args import CONFIG_HELP
from traild.cli.errors import EXIT_SOFTWARE, classify, mark_reported, unwrap
from traild.core.errors import BrokerConfigRefused, ConfigError, SchemaOutOfDate


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon",
        description="Run the daemon until SIGTERM/SIGINT (SIGHUP reloads); while another "
        "traild owns the broker account it stands by. Exit codes: 0 drained, 75 records left "
        "in the journal or the account's lease lost to another traild, 78 a refusal a restart "
        "cannot fix (invalid configuration, schema behind, unreadable replay file or state "
        "directory, IG refusing the login, the API key or the streaming protocol), 1 any other "
        "failure.",
    )
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.set_defaults(func=_run)

    p = sub.add_parser("demo", help="the daemon on embedded defaults with paper trades")
    p.add_argument(
        "--seconds",
        type=_seconds,
        default=30.0,
        metavar="N",
        help=f"how long the daemon runs, 1 to {MAX_SECONDS} seconds (default 30)",
    )
    p.add_argument(
        "--trades",
        type=_count,
        default=6,
        metavar="N",
        help="paper trades to open, 1 to 1000 (default 6)",
    )
    p.add_argument("--json-logs", action="store_true", help="show the daemon's JSON log lines")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the state directory (database and a traild.toml for `traild report "
        "--config`) and print where it is",
    )
    p.set_defaults(func=_demo)

    for name, on in (("halt", True), ("resume", False)):
        p = sub.add_parser(
            name,
            help=f"global kill switch {'on' if on else 'off'}",
            description="Write ($STATE_DIR/HALT) or remove the halt file the daemon polls, "
            "and set (or unset) daemon.halt in the database, so the switch reaches whichever "
            "host owns the account: while either is on no stop is amended (actors keep "
            "tracking). Without a database the file alone works.",
        )
        p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
        p.set_defaults(func=_halt, on=on)


MAX_SECONDS = 86400


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 1 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_SECONDS} seconds: {text!r}")
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
    """The daemon; every error that ends it is one structured record and an exit code."""
    import trio

    from traild.config.settings import load
    from traild.daemon.app import EXIT_REFUSED, Daemon
    from traild.log import setup_logging

    setup_logging()
    from loguru import logger

    try:
        settings = load(args.config)
    except ConfigError as exc:
        mark_reported()
        logger.bind(event="config.rejected", problems=exc.problems).error(str(exc))
        return EXIT_REFUSED
    try:
        return trio.run(Daemon(settings, args.config).run)
    except Exception as exc:  # the daemon's last word: a record, never a traceback
        mark_reported()
        code, message = classify(exc, daemon=True)
        error = unwrap(exc)
        refused = isinstance(error, SchemaOutOfDate | BrokerConfigRefused)
        event = "daemon.refused" if refused else "daemon.failed"
        record = logger.bind(event=event, error=message, exit_code=code)
        if isinstance(error, ConfigError):  # the database's overrides do not fit this file
            record = logger.bind(
                event="config.rejected", source="database", problems=error.problems,
                exit_code=code,
            )  # fmt: skip
        if code == EXIT_SOFTWARE:  # a bug: its traceback as one field of the record
            record = record.bind(traceback="".join(traceback.format_exception(error)))
        record.error(message)
        if isinstance(error, SchemaOutOfDate):
            sys.stderr.write(f"traild: error: {message}\n")
        return code


def _demo(args: argparse.Namespace) -> int:
    from traild.daemon.demo import run_demo

    return run_demo(args.seconds, args.trades, args.json_logs, args.keep)


def _halt(args: argparse.Namespace) -> int:
    from traild.config.settings import load
    from traild.daemon.halt import halt_path

    settings = load(args.config)
    path = halt_path(settings)
    if args.on:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("halted by `traild halt`\n")
        print(f"halt engaged ({path}); the running daemon stops amending within a second")
    else:
        path.unlink(missing_ok=True)
        print(f"halt released ({path}); amendments resume")
    print(_halt_in_database(settings, args.on))
    return 0


def _halt_in_database(settings: Any, on: bool) -> str:
    """Set (or remove) ``daemon.halt`` in the database: the daemon owning the account reads
    it wherever it runs. The file switch works without it, so a failure is only reported."""
    from datetime import UTC, datetime

    from traild.cli.config_db import (
        StoreTimeout,
        database_exists,
        run_on_config_store,
        who_am_i,
    )
    from traild.core.errors import TraildError
    from traild.core.overrides import DAEMON_SCOPE

    if not database_exists(settings):
        return "no database yet: the file switch alone applies (on this host)"

    async def write(store: Any) -> int:
        version, _ = await store.config_overrides()
        changes = {(DAEMON_SCOPE, "halt"): True if on else None}
        return len(await store.apply_changes(changes, who_am_i(None), datetime.now(UTC), version))

    try:
        run_on_config_store(settings, write, timeout=10.0)
    except StoreTimeout:
        return "database did not answer within 10 s: the file switch alone applies (on this host)"
    except (TraildError, OSError) as exc:
        return f"database not reached ({exc}): the file switch alone applies (on this host)"
    state = "set" if on else "removed"
    return f"daemon.halt {state} in the database: reaches the owner of the account on any host"
