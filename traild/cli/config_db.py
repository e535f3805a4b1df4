"""The configuration database as the commands see it: the effective settings (the file, the
environment, then the database's overrides), where each value came from, and who is making a
change. ``traild config``, ``check-config``, ``calc``, ``halt`` and ``resume`` read it from here;
a SQLite database is read without trio or the async store (``config_blocking``); PostgreSQL
opens the async store.
"""

from __future__ import annotations

import getpass
import math
import os
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from traild.config.service import apply_overrides, value_sources
from traild.config.settings import Settings, load
from traild.core.errors import ConfigError, StoreError, TraildError
from traild.core.overrides import ConfigOverride

_CHECK_TIMEOUT_S = 10.0
T = TypeVar("T")


class StoreTimeout(StoreError):
    """The database did not answer within a command's time limit."""


@dataclass(frozen=True)
class Effective:
    """The file's settings, the database's overrides and the result."""

    base: Settings
    overrides: list[ConfigOverride]
    settings: Settings
    version: int


def run_on_config_store(
    settings: Settings, fn: Callable[[Any], Coroutine[Any, Any, T]], timeout: float | None = None
) -> T:
    """``await fn(config_store)`` on the configured database.

    SQLite: on ``BlockingConfigStore``, without trio or the async store (a locked file fails
    after the same busy timeout as the store's). PostgreSQL: on the async store, bounded by
    ``timeout`` (StoreTimeout past it: an unreachable server can hang a connect).
    """
    from traild.adapters.store.config_blocking import drive, is_sqlite, open_blocking_config

    url = settings.database_url()
    if is_sqlite(url):
        with open_blocking_config(url) as store:
            return drive(fn(store))
    import trio  # only for PostgreSQL: SQLite commands do not pay for trio and the async store

    from traild.adapters.store import open_store

    async def run() -> T:
        with trio.fail_after(timeout if timeout is not None else math.inf):
            async with open_store(url, write_timeout=settings.database.write_timeout_s) as store:
                return await fn(store.config_store())

    try:
        return trio.run(run)
    except trio.TooSlowError:
        raise StoreTimeout(f"the database did not answer within {timeout:g} s") from None


def read_effective(config: str | None, timeout: float | None = None) -> Effective:
    base = load(config)

    async def read(store: Any) -> tuple[int, list[ConfigOverride]]:
        result: tuple[int, list[ConfigOverride]] = await store.config_overrides()
        return result

    version, overrides = run_on_config_store(base, read, timeout)
    return Effective(base, overrides, apply_overrides(base, overrides), version)


def who_am_i(by: str | None) -> str:
    """``--by``, else the login name (the audit trail's ``changed_by``)."""
    if by:
        return str(by).strip() or "unknown"
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return "unknown"


def environ() -> dict[str, str]:
    return dict(os.environ)


def check_config_sources(config: str | None) -> tuple[Settings, dict[str, tuple[Any, str]], str]:
    """For ``check-config``: the effective settings (with the database's overrides when the
    database is reachable and migrated), the source of every value, and a note when not."""
    base = load(config)
    overrides: list[ConfigOverride] = []
    note = ""
    if not database_exists(base):
        note = "no database file yet: values from the file and the environment only"
    else:
        try:
            with _quiet_store():
                overrides = read_effective(config, timeout=_CHECK_TIMEOUT_S).overrides
        except ConfigError:
            raise  # the daemon would refuse to start with these overrides
        except TraildError as exc:
            note = f"database overrides not read ({exc})"
    settings = apply_overrides(base, overrides)
    return settings, value_sources(config, environ(), overrides, settings), note


def database_exists(settings: Settings) -> bool:
    """False for a SQLite file that does not exist yet (check-config must not create it)."""
    url = settings.database_url()
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            return Path(url[len(prefix) :]).is_file()
    return True


@contextmanager
def _quiet_store() -> Iterator[None]:
    """Store log records (e.g. a legacy-schema notice) stay out of check-config's output."""
    from loguru import logger

    logger.disable("traild.adapters.store")
    try:
        yield
    finally:
        logger.enable("traild.adapters.store")
