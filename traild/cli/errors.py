"""The one place that turns an error into a line on stderr and an exit code.

Exit codes (sysexits where one fits): 1 a failure (database, broker, bad input file), 2 a bad
command line (argparse, or a UsageError found while checking the arguments), 70 an internal
error (a bug: reported, never a traceback unless ``TRAILD_DEBUG=1``), 73 a file or directory
that cannot be created or written, 130 interrupted.
``traild run`` exits 78 (EX_CONFIG; systemd must not restart) for everything a restart cannot
fix: an invalid configuration from any source, a schema that needs ``traild migrate``, a replay
file that cannot be read, a state directory or database file that cannot be created, and a
broker refusing the configuration (IG refusing the credentials, the API key, the account or
the streaming protocol: restarting would only log in with the wrong password again).
"""

from __future__ import annotations

import os
import sys
import threading
import traceback

from traild.core.errors import (
    BrokerConfigRefused,
    ConfigError,
    DataError,
    SchemaOutOfDate,
    TraildError,
    UsageError,
)

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SOFTWARE = 70
EXIT_CANTCREAT = 73
EXIT_CONFIG = 78
EXIT_INTERRUPTED = 130


def unwrap(exc: BaseException) -> BaseException:
    """The error inside an exception group (trio nurseries wrap what they raise): its only
    error, or, when every error in it is one traild raises on purpose, the one that decides
    the exit (a refusal of the configuration first: two tasks sharing one IG stream both end
    with its refusal). A group with anything else stays a group (an internal error)."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = _leaves(exc)
    distinct = list({id(leaf): leaf for leaf in leaves}.values())
    if len(distinct) == 1:
        return distinct[0]
    if all(isinstance(leaf, TraildError) for leaf in distinct):
        refusals = [leaf for leaf in distinct if isinstance(leaf, _REFUSALS)]
        return (refusals or distinct)[0]
    return exc


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def classify(exc: BaseException, *, daemon: bool = False) -> tuple[int, str]:
    """(exit code, one-line message) for an error that reached the command line; ``daemon``:
    the codes of ``traild run`` (78 for what a restart cannot fix)."""
    exc = unwrap(exc)
    if isinstance(exc, UsageError):
        return EXIT_USAGE, _one_line(str(exc))
    if isinstance(exc, _REFUSALS):
        return EXIT_CONFIG if daemon else EXIT_FAILED, _one_line(str(exc))
    if isinstance(exc, DataError):  # in the daemon: a replay file
        return EXIT_CONFIG if daemon else EXIT_FAILED, _one_line(str(exc))
    if isinstance(exc, TraildError):
        return EXIT_FAILED, _one_line(str(exc))
    if isinstance(exc, OSError) and _is_file_error(exc):
        return EXIT_CONFIG if daemon else EXIT_CANTCREAT, _one_line(describe_os_error(exc))
    if isinstance(exc, OSError):  # e.g. a connection: transient, worth a restart
        return EXIT_FAILED, _one_line(describe_os_error(exc))
    if isinstance(exc, MemoryError):
        return EXIT_FAILED, "out of memory: use a smaller input (fewer ticks or entries)"
    name = type(exc).__name__
    return EXIT_SOFTWARE, _one_line(f"internal error ({name}: {exc}); rerun with TRAILD_DEBUG=1")


_REFUSALS = (ConfigError, SchemaOutOfDate, BrokerConfigRefused)
_FILE_ERRORS = (
    PermissionError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
)


def _is_file_error(exc: OSError) -> bool:
    return exc.filename is not None or isinstance(exc, _FILE_ERRORS)


def describe_os_error(exc: OSError) -> str:
    """``cannot use PATH: reason`` for a file-system error (no errno tuple, no repr)."""
    what = exc.strerror or type(exc).__name__
    if isinstance(exc, FileExistsError):
        what = "exists and is not a directory"
    path = exc.filename
    if path is None:
        return f"file system error: {what}"
    return f"cannot use {os.fsdecode(path)}: {what} (check the path and its permissions)"


_reported = threading.Event()  # an error line was written: later thread noise stays silent
_pending: list[str] = []  # background-thread errors seen while the command still runs
_done = threading.Event()


def report(exc: BaseException) -> int:
    """Write the one line to stderr and return the exit code."""
    code, message = classify(exc)
    _reported.set()
    sys.stderr.write(f"traild: error: {message}\n")
    if code == EXIT_SOFTWARE and os.environ.get("TRAILD_DEBUG"):
        traceback.print_exception(exc)
    return code


def install_thread_hook() -> None:
    """An exception in a background thread (e.g. a database driver's worker finding its event
    loop closed while the command fails) is one line, or nothing when the command reports its
    own error; never a traceback (``TRAILD_DEBUG=1`` shows it). See ``flush_thread_errors``."""

    _reported.clear()
    _done.clear()
    _pending.clear()

    def hook(args: threading.ExceptHookArgs) -> None:
        if os.environ.get("TRAILD_DEBUG"):
            threading.__excepthook__(args)
            return
        if args.exc_value is None or _reported.is_set():
            return
        name = args.thread.name if args.thread is not None else "a thread"
        line = _one_line(f"traild: error: in {name}: {args.exc_type.__name__}: {args.exc_value}")
        if _done.is_set():
            sys.stderr.write(line + "\n")
        else:
            _pending.append(line)

    threading.excepthook = hook


def mark_reported() -> None:
    """The command reported its error its own way (``run``: a log record)."""
    _reported.set()


def flush_thread_errors() -> None:
    """The command has finished: background-thread errors it did not explain, one line each."""
    _done.set()
    if not _reported.is_set():
        for line in _pending:
            sys.stderr.write(line + "\n")
    _pending.clear()


def _one_line(text: str) -> str:
    return " ".join(text.split())
