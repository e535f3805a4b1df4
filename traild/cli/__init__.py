"""The command line: ``traild <command>``. Thin: parse, call, print; errors are one line on stderr.

Each command module exposes ``register(subparsers)`` and sets ``func(args) -> int`` on its parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from traild.cli.errors import EXIT_INTERRUPTED, flush_thread_errors, install_thread_hook, report

# Command modules, in the order their commands appear in ``traild --help``.
_MODULES = (
    "traild.cli.core_cmds",
    "traild.cli.daemon_cmds",
    "traild.cli.store_cmds",
    "traild.cli.config_cmds",
    "traild.cli.rollout_cmds",
    "traild.cli.backtest_cmds",
    "traild.cli.ticks_cmds",
    "traild.cli.ig_cmds",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"traild: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="traild", description="Trailing-stop daemon for FX trades.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _version() -> str:
    from traild import __version__

    return f"traild {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    install_thread_hook()
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # the one place errors become a line and an exit code
        code = report(exc)
    finally:
        flush_thread_errors()
    return code
