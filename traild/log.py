"""Logging: loguru on stderr, JSON lines for journald and machines, text on a terminal.

Every record carries ``event`` (``log`` when none was bound; ``lib.<package>`` for records
from stdlib ``logging``). A JSON line is one compact object: ``ts`` (ISO UTC), ``level``,
``event``, ``message`` and every bound field flattened (a field named like one of those is
renamed ``extra_<name>``). Under systemd, when ``$JOURNAL_STREAM`` is this stderr, each line
starts with the ``<N>`` syslog priority so ``journalctl -p warning`` works.

Secrets never reach a sink: a patcher redacts fields named like a credential (password,
api_key, token, cst, x-security-token, ...) at any depth, and ``key=value`` pairs of those
names inside messages.
"""

from __future__ import annotations

import json as _json
import logging
import math
import os
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from pathlib import PurePath
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Message, Record

REDACTED = "***"
_SECRET_NAMES = (
    "password", "passwd", "api_key", "apikey", "token", "cst", "x_security_token", "secret",
    "authorization",
)  # fmt: skip
_SECRET_TEXT = re.compile(
    r"(?i)\b(password|passwd|api[_-]?key|x-security-token|cst|token|secret)\b"
    r"(\s*[=:]\s*)([\"']?)[^\s\"',;&}]+"
)
_RESERVED = ("ts", "level", "event", "message", "exception")
_PRIORITY = {
    "TRACE": 7, "DEBUG": 7, "INFO": 6, "SUCCESS": 5, "WARNING": 4, "ERROR": 3, "CRITICAL": 2,
}  # fmt: skip
_QUIET = ("httpx", "httpcore", "sqlalchemy", "alembic", "aiosqlite", "asyncpg", "trio_asyncio")
_TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "<cyan>{extra[event]}</cyan> {message}<dim>{extra[_fields]}</dim>\n{exception}"
)

_handlers: list[int] = []


def setup_logging(
    json: bool | None = None, level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Route loguru and stdlib logging to stderr: JSON lines, or text when stderr is a TTY.

    ``json`` None decides by the terminal. ``stream`` replaces stderr (tests, embedding).
    Calling it again replaces the previous setup.
    """
    reset_logging()
    with suppress(ValueError):  # loguru's default handler; gone after the first setup
        logger.remove(0)
    _install_patcher()
    use_json = not _isatty(stream or sys.stderr) if json is None else json
    if use_json:
        sink = _JsonSink(stream, journal=journal_stream_matches(stream))
        _handlers.append(
            logger.add(sink, level=level, format="{message}", diagnose=False, backtrace=False)
        )
    else:
        _handlers.append(
            logger.add(
                stream or sys.stderr,
                level=level,
                format=_text_format,
                diagnose=False,
                backtrace=False,
            )
        )
    _intercept_stdlib()


def reset_logging() -> None:
    """Remove the sinks and the stdlib interception ``setup_logging`` installed."""
    for handler in _handlers:
        logger.remove(handler)
    _handlers.clear()
    root = logging.getLogger()
    for stdlib_handler in list(root.handlers):
        if isinstance(stdlib_handler, _InterceptHandler):
            root.removeHandler(stdlib_handler)


@contextmanager
def capture_events(level: str = "DEBUG") -> Iterator[list[dict[str, Any]]]:
    """Collect every record as the parsed JSON object a JSON sink would write (tests)."""
    _install_patcher()
    records: list[dict[str, Any]] = []

    def sink(message: Message) -> None:
        records.append(_json.loads(render(message.record)))

    handler = logger.add(sink, level=level, format="{message}", catch=False)
    try:
        yield records
    finally:
        logger.remove(handler)


def render(record: Record) -> str:
    """One record as a compact JSON object (no newline)."""
    extra = record["extra"]
    out: dict[str, Any] = {
        "ts": record["time"].astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "level": record["level"].name,
        "event": str(extra.get("event") or "log"),
        "message": record["message"],
    }
    for key, value in extra.items():
        if key == "event" or key.startswith("_"):
            continue
        out[f"extra_{key}" if key in _RESERVED else key] = _jsonable(value)
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        lines = traceback.format_exception(exc.type, exc.value, exc.traceback)
        out["exception"] = redact_text("".join(lines).rstrip())
    return _json.dumps(out, ensure_ascii=False, separators=(",", ":"), default=str)


class _JsonSink:
    """Writes JSON lines to ``stream``, else the current ``sys.stderr`` (``<N>`` for journald)."""

    def __init__(self, stream: TextIO | None, journal: bool) -> None:
        self.stream = stream
        self.journal = journal

    def __call__(self, message: Message) -> None:
        record = message.record
        line = render(record)
        if self.journal:
            line = f"<{_PRIORITY.get(record['level'].name, 2)}>{line}"
        (self.stream or sys.stderr).write(line + "\n")


def _text_format(record: Record) -> str:
    extra = record["extra"]
    fields = [f"{k}={v}" for k, v in extra.items() if k != "event" and not k.startswith("_")]
    extra["_fields"] = (" " + " ".join(fields)) if fields else ""
    return _TEXT_FORMAT


# -- redaction ------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def is_secret(key: str) -> bool:
    """True for a field name that holds a credential (``ig_password``, ``X-SECURITY-TOKEN``).
    Cached: every record asks for each of its field names, and there are few distinct ones."""
    name = key.lower().replace("-", "_")
    return any(name == s or name.endswith("_" + s) for s in _SECRET_NAMES)


def redact(value: Any) -> Any:
    """``value`` with every credential-named mapping entry replaced, at any depth."""
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """``password=...``, ``CST: ...`` and the like inside free text, with the value hidden."""
    return _SECRET_TEXT.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{REDACTED}", text)


def _patch(record: Record) -> None:
    record["message"] = redact_text(record["message"])
    extra = record["extra"]
    for key in list(extra):
        extra[key] = REDACTED if is_secret(key) else redact(extra[key])
    extra.setdefault("event", "log")


def _install_patcher() -> None:
    logger.configure(patcher=_patch)


def _jsonable(value: Any) -> Any:
    """Values JSON can carry: NaN/inf as strings, times ISO, enums by value, Decimal exact."""
    if isinstance(value, bool | int | str) or value is None:
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, Decimal | PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    return str(value)


# -- environment ----------------------------------------------------------------------------


def journal_stream_matches(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (stderr) is the journal stream announced in ``$JOURNAL_STREAM``."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(device) and st.st_ino == int(inode)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _InterceptHandler(logging.Handler):
    """stdlib logging -> loguru, at the caller's depth, with ``event=lib.<package>``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame: FrameType | None = logging.currentframe()
        depth = 2
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame, depth = frame.f_back, depth + 1
        logger.opt(depth=depth, exception=record.exc_info).bind(
            event=f"lib.{record.name.split('.')[0]}", logger=record.name
        ).log(level, record.getMessage())


def _intercept_stdlib() -> None:
    logging.basicConfig(handlers=[_InterceptHandler()], level=0, force=True)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
