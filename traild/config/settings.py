"""Settings: one TOML file plus ``TRAILD_*`` environment (env wins), validated as a whole.

``load()`` returns a valid Settings or raises one ConfigError listing every bad key path.
Unknown keys are errors, in the file and in the environment. Secrets are SecretStr and are
redacted by ``redacted()``. The model itself is ``traild.config.schema.Settings`` (re-exported
here: callers import ``Settings`` and ``load`` from this module).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from traild.config.env import ENV_PREFIX, env_parse_problem, from_env, is_setting_var
from traild.config.schema import Settings, reading_environ
from traild.core.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG",
    "Settings",
    "config_path",
    "describe_error",
    "describe_sources",
    "load",
    "non_finite_problems",
]

DEFAULT_CONFIG = Path("config/traild.toml")


def config_path(path: str | Path | None = None) -> Path | None:
    """The config file to read: explicit, $TRAILD_CONFIG, ./config/traild.toml, else none."""
    if path is not None:
        return Path(path)
    env = os.environ.get("TRAILD_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def describe_sources(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """Where the configuration came from, for ``check-config``: file(s) and variables."""
    chosen = config_path(path)
    env = os.environ if environ is None else environ
    names = sorted(k.upper() for k in env if is_setting_var(k))
    file_part = f"file {chosen}" if chosen else "no config file (embedded defaults)"
    env_part = f"environment {', '.join(names)}" if names else "no TRAILD_* environment"
    creds = env.get("CREDENTIALS_DIRECTORY")
    cred_part = f"; systemd credentials in {creds}" if creds and Path(creds).is_dir() else ""
    return f"{file_part}; {env_part}{cred_part}"


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate; raise ConfigError listing every problem."""
    chosen = config_path(path)
    source = str(chosen) if chosen else "embedded defaults"
    data: dict[str, Any] = {}
    if chosen is not None:
        try:
            with chosen.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError([f"config file not found: {chosen}"], source) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"cannot read {chosen}: {exc.__class__.__name__}"], source) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"TOML syntax: {exc}"], source) from None
    env = os.environ if environ is None else environ
    ours = {k.upper(): v for k, v in env.items() if is_setting_var(k)}
    if ours:
        source = f"{chosen} and the environment" if chosen else "the environment"
    problems = _unknown_env_keys(env)
    try:
        with reading_environ(environ):
            settings = Settings(**data)
    except ValidationError as exc:
        problems += [from_env(describe_error(err), ours) for err in exc.errors()]
    except SettingsError as exc:
        problems.append(env_parse_problem(exc, ours))
    if problems:
        raise ConfigError(problems, source)
    problems += non_finite_problems(settings.model_dump())
    if problems:
        raise ConfigError(problems, source)
    return settings


def describe_error(err: Any) -> str:
    """One pydantic validation error as ``key.path: message``."""
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    return f"{loc}: {msg}" if loc else msg  # whole-model problems name their keys themselves


def non_finite_problems(data: Any, path: str = "") -> list[str]:
    """Every NaN or infinite number in the dumped settings, by key path."""
    if isinstance(data, dict):
        out: list[str] = []
        for k, v in data.items():
            out += non_finite_problems(v, f"{path}.{k}" if path else str(k))
        return out
    if isinstance(data, float) and not math.isfinite(data):
        return [f"{path}: must be a finite number"]
    return []


def _unknown_env_keys(env: Mapping[str, str]) -> list[str]:
    """``TRAILD_*`` variables that name no setting (TRAILD_CONFIG and TRAILD_DEBUG are not)."""
    problems = []
    for name in env:
        upper = name.upper()
        if not is_setting_var(upper):
            continue
        parts = upper[len(ENV_PREFIX) :].lower().split("__")
        if not _known_path(Settings, parts):
            problems.append(f"environment {name}: unknown key")
    return problems


def _known_path(model: type[BaseModel], parts: list[str]) -> bool:
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    rest = parts[1:]
    if not rest:
        return True
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _known_path(annotation, rest)
    origin = getattr(annotation, "__origin__", None)
    return origin is dict
