"""The command line: ``traild <command>``. Thin: parse, call, print; errors are one line on stderr.

Each command module exposes ``register(subparsers)`` and sets ``func(args) -> int`` on its parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from traild.core.errors import TraildError

# Command modules, in the order their commands appear in ``traild --help``.
_MODULES = (
    "traild.cli.core_cmds",
    "traild.cli.daemon_cmds",
    "traild.cli.store_cmds",
    "traild.cli.backtest_cmds",
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
    try:
        code: int = args.func(args)
    except TraildError as exc:
        sys.stderr.write(f"traild: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return code
