"""Configuration overrides kept in the database (``traild config set``), as plain values.

An override is ``(scope, key, value)``: scope ``trailing`` with a rollout key, ``daemon`` with
``halt`` (the global kill switch, so ``traild halt`` reaches whichever host owns the account),
or a pair key
(``DEFAULT``, an epic, a symbol) with a path below ``[pairs.<PAIR>]`` such as
``regular.stage1_trigger``. ``overlay`` turns a set of them into the nested shape of the TOML
file, so they are validated by exactly the same models as the file.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from traild.core.calculator import StageConfig
from traild.core.errors import ConfigError, UsageError

TRAILING_SCOPE = "trailing"
# [trailing] keys the database may override. The master toggle and the forced-fixed list stay
# in the file: kill switches must work without the database.
TRAILING_KEYS = ("dynamic_trailing_pairs",)
_LIST_KEYS = frozenset(TRAILING_KEYS)
DAEMON_SCOPE = "daemon"
# [daemon] keys the database may override: the global halt (``traild halt`` writes it too).
DAEMON_KEYS = ("halt",)
_NAMED_SCOPES = (TRAILING_SCOPE, DAEMON_SCOPE)
PAIR_KINDS = ("regular", "scalp")


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
    """``trailing`` and ``daemon`` as they are; pair keys upper case (the file's pair keys are
    case-insensitive)."""
    text = scope.strip()
    if not text:
        raise UsageError("pair: empty (an epic, a symbol, DEFAULT, 'trailing' or 'daemon')")
    return text.lower() if text.lower() in _NAMED_SCOPES else text.upper()


def key_path(scope: str, key: str) -> str:
    """The key's path in the file (e.g. ``pairs.EURUSD.regular.x``)."""
    if scope in _NAMED_SCOPES:
        return f"{scope}.{key}"
    return f"pairs.{scope}.{key}"


def check_key(scope: str, key: str) -> None:
    """A key ``config set``/``unset`` may name: a rollout key under ``trailing``, else a stage
    key of a pair (``regular.stage1_lock``, ``scalp.regimes.trending.stage2_trigger``);
    UsageError naming the close match or the valid keys otherwise."""
    parts = key.split(".")
    path = key_path(scope, key)
    if not key or any(not p.strip() for p in parts):
        raise UsageError(f"{path}: not a key path (KEY is e.g. regular.stage1_lock)")
    if scope == TRAILING_SCOPE:
        if key not in TRAILING_KEYS:
            allowed = ", ".join(TRAILING_KEYS)
            why = f"not editable in the database (only {allowed}; the rest is the file's)"
            raise UsageError(f"trailing.{key}: {why}")
        return
    if scope == DAEMON_SCOPE:
        if key not in DAEMON_KEYS:
            why = f"not editable in the database (only {', '.join(DAEMON_KEYS)})"
            raise UsageError(f"daemon.{key}: {why}")
        return
    if not _is_pair_key(parts):
        raise UsageError(f"{path}: {_why_unknown(key, parts)}")


def pair_keys() -> list[str]:
    """The keys below a pair: ``<regular|scalp>.<stage key>`` (regime tables aside)."""
    return [f"{kind}.{name}" for kind in PAIR_KINDS for name in StageConfig.field_names()]


def _is_pair_key(parts: list[str]) -> bool:
    names = StageConfig.field_names()
    if parts[0] not in PAIR_KINDS:
        return False
    if len(parts) == 2:
        return parts[1] in names
    if len(parts) != 4:
        return False
    return parts[1] == "regimes" and parts[2].replace("_", "").isalnum() and parts[3] in names


def _why_unknown(key: str, parts: list[str]) -> str:
    if parts[0] in PAIR_KINDS and (len(parts) == 1 or (parts[1] == "regimes" and len(parts) < 4)):
        return f"a table: set one key at a time (e.g. {parts[0]}.stage1_lock=8)"
    candidates = pair_keys()
    if len(parts) == 4 and parts[1] == "regimes":
        candidates = [f"{'.'.join(parts[:3])}.{n}" for n in StageConfig.field_names()]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.75)
    if close:
        return f"unknown key; did you mean {close[0]}?"
    return (
        f"unknown key; a pair takes <regular|scalp>.<stage key> or "
        f"<regular|scalp>.regimes.<market_regime>.<stage key>, with a stage key of "
        f"{', '.join(StageConfig.field_names())}"
    )


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
    """``KEY=VALUE`` -> (key, value); UsageError when malformed or an unknown key, ConfigError
    with the key path for a table value."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep:
        raise UsageError(f"{text!r}: expected KEY=VALUE (e.g. regular.stage1_lock=8)")
    check_key(scope, key)
    value = parse_value(scope, key, raw.strip())
    if isinstance(value, dict):
        raise ConfigError([f"{key_path(scope, key)}: set one key at a time, not a table"])
    return key, value


def overlay(overrides: Iterable[ConfigOverride]) -> dict[str, Any]:
    """The overrides as nested settings data: ``{"trailing": {...}, "daemon": {...}, "pairs":
    {PAIR: {...}}}``."""
    out: dict[str, Any] = {}
    for item in overrides:
        if item.scope in _NAMED_SCOPES:
            node = out.setdefault(item.scope, {})
        else:
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
