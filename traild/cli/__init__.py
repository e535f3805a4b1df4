"""The command line: ``traild <command>``. Thin: parse, call, print; errors are one line on stderr.

Each command module exposes ``register(subparsers)`` and sets ``func(args) -> int`` on its parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from traild.cli.errors import EXIT_INTERRUPTED, flush_thread_errors, install_thread_hook, report

# Command modules and their commands (name, one-line help), in the order of ``traild --help``.
# Only the module of the command being run is imported (``traild --version``, ``calc`` or
# ``halt`` must not pay for NumPy, trio or SQLAlchemy); the others appear as these lines.
# A test checks the table against what each module registers.
_COMMANDS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "traild.cli.core_cmds",
        (
            ("check-config", "validate a config file and print the effective one"),
            ("calc", "the stages a trade would get"),
            ("simulate", "one trade through the ladder over a tick file"),
        ),
    ),
    (
        "traild.cli.daemon_cmds",
        (
            ("run", "run the daemon"),
            ("demo", "the daemon on embedded defaults with paper trades"),
            ("halt", "global kill switch on"),
            ("resume", "global kill switch off"),
        ),
    ),
    (
        "traild.cli.store_cmds",
        (
            ("migrate", "bring the database schema to head"),
            ("report", "methods, outcomes and fallback reasons from the database"),
            ("trade", "record trades for the daemon to adopt"),
        ),
    ),
    ("traild.cli.config_cmds", (("config", "per-pair configuration in the database"),)),
    ("traild.cli.lease_cmds", (("lease", "who owns each broker account"),)),
    ("traild.cli.rollout_cmds", (("rollout", "where each pair stands in the rollout plan"),)),
    (
        "traild.cli.backtest_cmds",
        (("backtest", "fixed versus dynamic trailing over historical ticks"),),
    ),
    ("traild.cli.ticks_cmds", (("ticks", "recorded ticks ([feed] record = true)"),)),
    ("traild.cli.ig_cmds", (("ig", "IG account tools"),)),
)
_MODULES = tuple(module for module, _ in _COMMANDS)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"traild: error: {message}\n")
        raise SystemExit(2)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command``, only that command's module is imported and
    registered (the other commands are listed by name and help only)."""
    parser = _Parser(prog="traild", description="Trailing-stop daemon for FX trades.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module, commands in _COMMANDS:
        if command is None or command in {name for name, _ in commands}:
            importlib.import_module(module).register(sub)
        else:
            for name, help_ in commands:
                sub.add_parser(name, help=help_, add_help=False)
    return parser


def _command_of(argv: Sequence[str]) -> str:
    """The command word of ``argv`` ('' for none: ``--version``, ``--help``, nothing)."""
    return next((a for a in argv if not a.startswith("-")), "")


def _version() -> str:
    from traild import __version__

    return f"traild {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_of(words)).parse_args(words)
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
