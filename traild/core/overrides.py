"""Configuration overrides kept in the database (``traild config set``), as plain values.

An override is ``(scope, key, value)``: scope ``trailing`` with a rollout key, or a pair key
(``DEFAULT``, an epic, a symbol) with a path below ``[pairs.<PAIR>]`` such as
``regular.stage1_trigger``. ``overlay`` turns a set of them into the nested shape of the TOML
file, so they are validated by exactly the same models as the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from traild.core.errors import ConfigError

TRAILING_SCOPE = "trailing"
# [trailing] keys the database may override. The master toggle and the forced-fixed list stay
# in the file: kill switches must work without the database.
TRAILING_KEYS = ("dynamic_trailing_pairs",)
_LIST_KEYS = frozenset(TRAILING_KEYS)


@dataclass(frozen=True, slots=True)
class ConfigOverride:
    """One value of ``trailing_config``."""

    scope: str
    key: str
    value: Any
    updated_at: datetime | None = None
    updated_by: str = ""

    @property
    def path(self) -> str:
        return key_path(self.scope, self.key)


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """One row of the audit trail; ``old``/``new`` None = not set (the file's value applied)."""

    id: int
    scope: str
    key: str
    old: Any
    new: Any
    changed_by: str
    changed_at: datetime

    @property
    def path(self) -> str:
        return key_path(self.scope, self.key)


def canonical_scope(scope: str) -> str:
    """``trailing`` as is; pair keys upper case (the file's pair keys are case-insensitive)."""
    text = scope.strip()
    if not text:
        raise ConfigError(["pair: empty (an epic, a symbol, DEFAULT or 'trailing')"])
    return TRAILING_SCOPE if text.lower() == TRAILING_SCOPE else text.upper()


def key_path(scope: str, key: str) -> str:
    """The key's path in the file (e.g. ``pairs.EURUSD.regular.x``)."""
    if scope == TRAILING_SCOPE:
        return f"{TRAILING_SCOPE}.{key}"
    return f"pairs.{scope}.{key}"


def check_key(scope: str, key: str) -> None:
    """Only rollout keys under ``trailing``; pair keys are checked by the settings models."""
    parts = key.split(".")
    if not key or any(not p.strip() for p in parts):
        raise ConfigError([f"{key_path(scope, key)}: not a key path"])
    if scope == TRAILING_SCOPE and key not in TRAILING_KEYS:
        allowed = ", ".join(TRAILING_KEYS)
        why = f"not editable in the database (only {allowed}; the rest is the file's)"
        raise ConfigError([f"trailing.{key}: {why}"])


def parse_value(scope: str, key: str, text: str) -> Any:
    """A command-line value: a TOML value (``18``, ``1.5``, ``["EURUSD"]``, ``true``), else the
    text itself; a list key also takes ``EURUSD,GBPUSD`` (empty text = the empty list)."""
    if scope == TRAILING_SCOPE and key in _LIST_KEYS and not text.strip().startswith("["):
        return [item.strip() for item in text.split(",") if item.strip()]
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignment(scope: str, text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value); ConfigError with the key path when malformed."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep:
        raise ConfigError([f"{text!r}: expected KEY=VALUE"])
    check_key(scope, key)
    value = parse_value(scope, key, raw.strip())
    if isinstance(value, dict):
        raise ConfigError([f"{key_path(scope, key)}: set one key at a time, not a table"])
    return key, value


def overlay(overrides: Iterable[ConfigOverride]) -> dict[str, Any]:
    """The overrides as nested settings data: ``{"trailing": {...}, "pairs": {PAIR: {...}}}``."""
    out: dict[str, Any] = {}
    for item in overrides:
        node = out.setdefault(TRAILING_SCOPE, {})
        if item.scope != TRAILING_SCOPE:
            node = out.setdefault("pairs", {}).setdefault(item.scope, {})
        *parents, leaf = item.key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError([f"{item.path}: {part} is a value, not a table"])
            node = child
        node[leaf] = item.value
    return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaf paths of nested mappings (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out
