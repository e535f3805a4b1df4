"""The ``TRAILD_*`` environment as a settings source: comma-separated lists, errors that
name the variable they came from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsError

ENV_PREFIX = "TRAILD_"


class EnvSource(EnvSettingsSource):
    """The environment source; a list of strings may also be given comma-separated
    (``TRAILD_TRAILING__FORCE_FIXED_TRAILING_PAIRS=CS.D.EURUSD.MINI.IP,CS.D.GBPUSD.MINI.IP``)."""

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            if isinstance(value, str) and _is_str_list(getattr(field, "annotation", None)):
                return [item.strip() for item in value.split(",") if item.strip()]
            raise EnvValueError(field_name) from None


class EnvValueError(ValueError):
    """A complex setting (table or list) whose environment value is not JSON."""

    def __init__(self, field_name: str) -> None:
        super().__init__(field_name)
        self.field_name = field_name


def _is_str_list(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is list and annotation.__args__ == (str,)


class MappingEnvSource(EnvSource):
    """The environment source over a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._environ.items()}


# TRAILD_* variables that are not settings: the config file's path, the switch that shows
# an internal error's traceback (``traild.cli.errors``), and where the parsed-tick cache is or
# that it is off (``traild.adapters.tickcache``).
CONTROL_VARS = frozenset({"TRAILD_CONFIG", "TRAILD_DEBUG", "TRAILD_CACHE_DIR", "TRAILD_NO_CACHE"})


def is_setting_var(name: str) -> bool:
    upper = name.upper()
    return upper.startswith(ENV_PREFIX) and upper not in CONTROL_VARS


def env_var_of(key_path: str, ours: Mapping[str, str]) -> str | None:
    """The ``TRAILD_*`` variable that sets ``key_path`` (or a table above it), if any."""
    parts = key_path.upper().split(".")
    for n in range(len(parts), 0, -1):
        name = ENV_PREFIX + "__".join(parts[:n])
        if name in ours:
            return name
    return None


def from_env(problem: str, ours: Mapping[str, str]) -> str:
    """``key: message`` naming the environment variable when that is where the key came from."""
    key, sep, message = problem.partition(": ")
    var = env_var_of(key, ours) if sep else None
    return f"{key} (from {var}): {message}" if var else problem


def env_parse_problem(exc: SettingsError, ours: Mapping[str, str]) -> str:
    cause = exc.__cause__
    field = cause.field_name if isinstance(cause, EnvValueError) else ""
    tail = field.upper()
    names = [n for n in ours if field and (n.endswith("__" + tail) or n == ENV_PREFIX + tail)]
    what = names[0] if names else "a TRAILD_* variable"
    return (
        f"environment {what}: not valid JSON (this key is a table or list; "
        "a list of names may also be comma-separated: A,B)"
    )
