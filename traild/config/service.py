"""The configuration service: the file's settings overlaid with the database's overrides.

The TOML file (and environment) stays the source of defaults; ``trailing_config`` overrides per
pair (and the rollout allowlist). The overlay is validated by the same models as the file, so a
value the file would refuse is refused here with the same key path. The daemon polls the
configuration's version every interval and re-reads the overrides only when it moved.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import ValidationError

from traild.config.env import ENV_PREFIX, is_setting_var
from traild.config.models import deep_merge
from traild.config.schema import reading_environ
from traild.config.settings import Settings, config_path, describe_error, non_finite_problems
from traild.core.errors import ConfigError
from traild.core.overrides import ConfigOverride, flatten, overlay
from traild.ports import ConfigSource

DATABASE = "database"
KINDS = ("regular", "scalp")
_CASELESS = ("pairs", "instruments")  # tables whose keys are epics (compared upper case)


def apply_overrides(base: Settings, overrides: Iterable[ConfigOverride]) -> Settings:
    """``base`` (file + environment) with ``overrides`` on top, validated as a whole."""
    items = list(overrides)
    if not items:
        return base
    data = deep_merge(base.model_dump(), overlay(items))
    try:
        with reading_environ({}):  # the environment is already in ``base``
            settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError([describe_error(err) for err in exc.errors()], DATABASE) from None
    problems = non_finite_problems(settings.model_dump())
    if problems:
        raise ConfigError(problems, DATABASE)
    return settings


class ConfigService:
    """Tracks the overrides a running daemon applies; ``poll`` is one cheap query when idle.

    Overrides rejected against the current file stay ``pending``: a reload (``rebase``) tries
    them again first, so fixing the file applies them without another database edit."""

    def __init__(self, base: Settings, source: ConfigSource | None) -> None:
        self.base = base
        self.source = source
        self.version: int | None = None
        self.overrides: list[ConfigOverride] = []
        self.pending: list[ConfigOverride] | None = None  # the latest, rejected, overrides
        self.effective = base

    async def start(self) -> Settings:
        """The effective settings at start-up; ConfigError when the overrides are invalid."""
        if self.source is None:
            return self.base
        version, overrides = await self.source.config_overrides()
        self.effective = apply_overrides(self.base, overrides)
        self.version, self.overrides = version, overrides
        if overrides:
            logger.bind(
                event="config.overrides",
                source=DATABASE,
                version=version,
                keys=[o.path for o in overrides],
            ).info("configuration overrides from the database")
        return self.effective

    async def poll(self) -> Settings | None:
        """New effective settings when the database changed and the result is valid; None when
        nothing changed or the change is rejected (logged ``config.rejected``, old one kept)."""
        if self.source is None or await self.source.config_version() == self.version:
            return None
        version, overrides = await self.source.config_overrides()
        self.version = version  # a rejected version is reported once, not every poll
        try:
            effective = apply_overrides(self.base, overrides)
        except ConfigError as exc:
            self.pending = overrides
            logger.bind(
                event="config.rejected", source=DATABASE, version=version, problems=exc.problems
            ).error("database configuration rejected; keeping the current one")
            return None
        self.overrides, self.effective, self.pending = overrides, effective, None
        return effective

    def rebase(self, base: Settings) -> Settings:
        """A reloaded file with the database's latest overrides when they validate against it
        (a rejected change applies once the file is fixed), else with the ones in force
        (ConfigError: those do not validate either; nothing changes)."""
        if self.pending is not None:
            try:
                effective = apply_overrides(base, self.pending)
            except ConfigError as exc:
                logger.bind(
                    event="config.rejected",
                    source=DATABASE,
                    version=self.version,
                    problems=exc.problems,
                ).warning("database configuration still rejected with the reloaded file")
            else:
                self.overrides, self.pending = self.pending, None
                self.base, self.effective = base, effective
                logger.bind(
                    event="config.overrides",
                    source=DATABASE,
                    version=self.version,
                    keys=[o.path for o in self.overrides],
                ).info("database configuration rejected earlier applies with the reloaded file")
                return effective
        effective = apply_overrides(base, self.overrides)
        self.base, self.effective = base, effective
        return effective


# -- where each value came from ---------------------------------------------------------------
def value_sources(
    path: str | Path | None,
    environ: Mapping[str, str],
    overrides: Iterable[ConfigOverride],
    effective: Settings,
) -> dict[str, tuple[Any, str]]:
    """Every leaf of the effective configuration -> (value, ``default|file|environment|
    database``); precedence database > environment > file > default."""
    from_db = {_canon(o.path) for o in overrides}
    from_env = [
        _canon(name[len(ENV_PREFIX) :].lower().replace("__", "."))
        for name in environ
        if is_setting_var(name)
    ]
    from_file = {_canon(p) for p in flatten(_file_data(path))}
    out: dict[str, tuple[Any, str]] = {}
    for key, value in flatten(effective.redacted()).items():
        canon = _canon(key)
        if canon in from_db:
            source = DATABASE
        elif any(canon == e or canon.startswith(e + ".") for e in from_env):
            source = "environment"
        elif canon in from_file or any(f.startswith(canon + ".") for f in from_file):
            source = "file"
        else:
            source = "default"
        out[key] = (value, source)
    return out


def _canon(path: str) -> str:
    parts = path.split(".")
    if len(parts) > 1 and parts[0].lower() in _CASELESS:
        parts[1] = parts[1].upper()
    return ".".join(parts)


def _file_data(path: str | Path | None) -> dict[str, Any]:
    chosen = config_path(path)
    if chosen is None:
        return {}
    with chosen.open("rb") as fh:
        return tomllib.load(fh)


# -- one pair, effective -----------------------------------------------------------------------
def pair_view(settings: Settings, pair: str, sources: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    """A pair's effective stage configs, each value with the key that set it and its source."""
    if pair != "DEFAULT":
        settings.instrument_table().resolve(pair)  # an unknown epic is an error
    from traild.config.rollout_stage import pair_stage

    stage, reason = pair_stage(settings, pair)
    out: dict[str, Any] = {"pair": pair, "rollout": {"stage": stage, "fixed_reason": reason}}
    for kind in KINDS:
        stages = settings.stage_config(pair, kind == "scalp").as_dict()
        out[kind] = {
            name: {"value": value, **_origin(settings, pair, kind, name, sources)}
            for name, value in stages.items()
        }
    return out


def _origin(
    settings: Settings, pair: str, kind: str, name: str, sources: dict[str, tuple[Any, str]]
) -> dict[str, str]:
    """The most specific pair key that sets ``name`` (epic > symbol > DEFAULT > built-in)."""
    layers = ["DEFAULT"]
    if pair != "DEFAULT":
        symbol = settings.instrument_table().resolve(pair).symbol
        layers += [symbol, pair.upper()]
    for layer in reversed(layers):
        key = f"pairs.{layer}.{kind}.{name}"
        hit = sources.get(key)
        if hit is not None and hit[0] is not None:
            return {"key": key, "source": hit[1]}
    return {"key": f"pairs.DEFAULT.{kind}.{name}", "source": "default"}
