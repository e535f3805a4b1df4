"""The Settings model: every section of the configuration together, the checks that span
sections, and the plain values the rest of traild derives from it (stage configs, calculator,
guard and condition parameters, paths). Reading it from a file and the environment is
``traild.config.settings``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from traild.config.env import ENV_PREFIX, EnvSource, MappingEnvSource
from traild.config.models import (
    DEFAULT_REGULAR,
    DEFAULT_SCALP,
    BacktestSettings,
    BrokerSettings,
    ConditionsSettings,
    DaemonSettings,
    DatabaseSettings,
    FeedSettings,
    InstrumentSettings,
    PairStages,
    RolloutSettings,
    TrailingSettings,
    deep_merge,
    redact_url,
)
from traild.core.calculator import CalculatorParams, StageConfig
from traild.core.conditions import ConditionParams, GuardParams
from traild.core.errors import InstrumentError
from traild.core.instruments import InstrumentOverride, InstrumentTable
from traild.core.ladder import LadderPolicy

_GUARD_KEYS = frozenset(
    (
        "max_tick_jump_pips",
        "spike_floor_pips",
        "spike_multiple",
        "max_tick_gap_hours",
        "max_clock_ahead_s",
        "reanchor_ticks",
    )
)
# The environment ``load(environ=...)`` reads instead of os.environ (None: os.environ).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("traild_environ", default=None)


class Settings(BaseSettings):
    """The whole configuration (SPEC §4)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    trailing: TrailingSettings = TrailingSettings()
    pairs: dict[str, PairStages] = {}
    conditions: ConditionsSettings = ConditionsSettings()
    instruments: dict[str, InstrumentSettings] = {}
    database: DatabaseSettings = DatabaseSettings()
    broker: BrokerSettings = BrokerSettings()
    feed: FeedSettings = FeedSettings()
    daemon: DaemonSettings = DaemonSettings()
    backtest: BacktestSettings = BacktestSettings()
    rollout: RolloutSettings = RolloutSettings()
    # stage_config per (epic, is_scalp): resolved once per key (the settings are frozen)
    _stage_cache: dict[tuple[str, bool], StageConfig] = PrivateAttr(default_factory=dict)
    _stage_owner: int = PrivateAttr(default=0)  # id() of the instance the cache belongs to
    # regime_tables per (epic, is_scalp), the same way (its owner: ``_stage_owner``)
    _regime_cache: dict[tuple[str, bool], dict[str, dict[str, float]]] = PrivateAttr(
        default_factory=dict
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        env_settings = (
            EnvSource(settings_cls) if environ is None else MappingEnvSource(settings_cls, environ)
        )
        sources: list[PydanticBaseSettingsSource] = [env_settings]
        creds = (os.environ if environ is None else environ).get("CREDENTIALS_DIRECTORY")
        if creds and Path(creds).is_dir():
            sources.append(
                NestedSecretsSettingsSource(
                    file_secret_settings,
                    secrets_dir=creds,
                    secrets_nested_delimiter="__",
                    secrets_prefix="",
                )
            )
        sources.append(init_settings)  # the TOML file, lowest priority above defaults
        return tuple(sources)

    @field_validator("pairs", "instruments", mode="before")
    @classmethod
    def _canonical_keys(cls, value: Any) -> Any:
        """Epic/symbol keys are case-insensitive: the environment delivers them lower-cased
        (``TRAILD_PAIRS__DEFAULT__...`` -> ``default``), so merge them over the file's
        spelling field by field instead of treating them as another epic."""
        if not isinstance(value, Mapping):
            return value
        out: dict[str, Any] = {}
        for key, item in value.items():
            canon = key.upper() if isinstance(key, str) else key
            out[canon] = deep_merge(out[canon], item) if canon in out else item
        return out

    @model_validator(mode="after")
    def _check_pairs(self) -> Settings:
        problems: list[str] = self.conditions.problems()
        if self.feed.kind == "ig" and self.broker.kind != "ig":
            problems.append(
                "feed.kind = 'ig' streams through the IG session: broker.kind must be 'ig'"
            )
        if self.broker.kind == "ig":
            ig = self.broker.ig
            for key in ("identifier",):
                if not getattr(ig, key):
                    problems.append(f"broker.ig.{key}: required when broker.kind = 'ig'")
            for key in ("password", "api_key"):
                if not getattr(ig, key).get_secret_value():
                    problems.append(
                        f"broker.ig.{key}: required when broker.kind = 'ig' (from "
                        f"TRAILD_BROKER__IG__{key.upper()} or a systemd credential)"
                    )
        table = self.instrument_table()
        for key, fields in self.instruments.items():
            try:
                table.resolve(key)
            except InstrumentError:
                missing = [k for k in ("pip_size", "tick_size") if getattr(fields, k) is None]
                problems.append(
                    f'instruments."{key}": not a built-in instrument, so it needs pip_size and '
                    f"tick_size (missing: {', '.join(missing)})"
                )
        for key in self.pairs:
            if key != "DEFAULT":
                _check_epic(table, key, f"pairs.{key}", problems)
        for epic in self.trailing.force_fixed_trailing_pairs:
            _check_epic(table, epic, "trailing.force_fixed_trailing_pairs", problems)
        for epic in self.trailing.dynamic_trailing_pairs:
            _check_epic(table, epic, "trailing.dynamic_trailing_pairs", problems)
        for epic in self.feed.epics:
            _check_epic(table, epic, "feed.epics", problems)
        for epic in self.feed.synthetic_epics:
            _check_epic(table, epic, "feed.synthetic_epics", problems)
        for key in dict.fromkeys(["DEFAULT", *self.pairs]):
            for scalp in (False, True):
                try:
                    stages = self.stage_config(key, scalp)
                except InstrumentError:
                    continue
                kind = "scalp" if scalp else "regular"
                problems += [f"pairs.{key}.{kind}: {p}" for p in stages.problems()]
                for name, overrides in self.regime_tables(key, scalp).items():
                    regime = StageConfig.from_dict({**stages.as_dict(), **overrides})
                    where = f"pairs.{key}.{kind}.regimes.{name}"
                    problems += [f"{where}: {p}" for p in regime.problems()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- derived plain values -------------------------------------------------------------
    def stage_config(self, epic: str, is_scalp: bool) -> StageConfig:
        """DEFAULT's stages overlaid with the epic's (exact epic key first, then its symbol);
        resolved once per key."""
        self._own_caches()
        key = (epic, is_scalp)
        found = self._stage_cache.get(key)
        if found is None:
            found = self._stage_cache[key] = self._resolve_stages(epic, is_scalp)
        return found

    def _own_caches(self) -> None:
        if self._stage_owner != id(self):  # a model_copy shares the dicts: start its own
            self._stage_cache, self._regime_cache, self._stage_owner = {}, {}, id(self)

    def _resolve_stages(self, epic: str, is_scalp: bool) -> StageConfig:
        kind = "scalp" if is_scalp else "regular"
        merged = (DEFAULT_SCALP if is_scalp else DEFAULT_REGULAR).model_dump()
        for layer in self._pair_layers(epic):
            fields = getattr(layer, kind).model_dump(exclude={"regimes"})
            merged.update({k: v for k, v in fields.items() if v is not None})
        return StageConfig.from_dict(merged)

    def regime_tables(self, epic: str, is_scalp: bool) -> dict[str, dict[str, float]]:
        """Per-market-regime overrides for ``epic``: DEFAULT's, then its symbol's, then its
        own, key by key (only the keys set; the calculator lays them over the base). Resolved
        once per key; each call returns its own copy."""
        self._own_caches()
        key = (epic, is_scalp)
        found = self._regime_cache.get(key)
        if found is None:
            found = self._regime_cache[key] = self._resolve_regimes(epic, is_scalp)
        return {name: dict(fields) for name, fields in found.items()}

    def _resolve_regimes(self, epic: str, is_scalp: bool) -> dict[str, dict[str, float]]:
        kind = "scalp" if is_scalp else "regular"
        tables: dict[str, dict[str, float]] = {}
        for layer in self._pair_layers(epic):
            for name, fields in getattr(layer, kind).regimes.items():
                set_ = {k: v for k, v in fields.model_dump().items() if v is not None}
                tables.setdefault(name, {}).update(set_)
        return tables

    def _pair_layers(self, epic: str) -> list[PairStages]:
        layers = [self.pairs.get("DEFAULT")]
        if epic != "DEFAULT":
            symbol = self.instrument_table().resolve(epic).symbol
            by_upper = {k.upper(): v for k, v in self.pairs.items()}
            layers += [by_upper.get(symbol), by_upper.get(epic.upper())]
        return [layer for layer in layers if layer is not None]

    def instrument_table(self) -> InstrumentTable:
        return InstrumentTable(
            {
                k: InstrumentOverride(
                    v.pip_size, v.tick_size, v.broker_scale, v.min_stop_distance_pips
                )
                for k, v in self.instruments.items()
            }
        )

    def calculator_params(self) -> CalculatorParams:
        t = self.trailing
        return CalculatorParams(
            enable_dynamic_trailing=t.enable_dynamic_trailing,
            enable_session_adjustment=t.enable_session_adjustment,
            volatility_multipliers=t.volatility_multipliers.model_dump(),
            scalp_volatility_multipliers=t.scalp_volatility_multipliers.model_dump(),
            session_multipliers=t.session_multipliers.model_dump(),
            atr_min_multiplier=t.atr_min_multiplier,
            atr_max_multiplier=t.atr_max_multiplier,
            force_fixed_trailing_pairs=frozenset(e.upper() for e in t.force_fixed_trailing_pairs),
            dynamic_trailing_pairs=frozenset(e.upper() for e in t.dynamic_trailing_pairs),
            stage_alert_min_pips=t.stage_alert_min_pips,
            stage_alert_max_pips=t.stage_alert_max_pips,
            atr_clamp=t.atr_clamp,
        )

    def ladder_policy(self, min_stop_distance_pips: float = 0.0) -> LadderPolicy:
        t = self.trailing
        return LadderPolicy(
            profit_lock=t.enable_guaranteed_profit_lock,
            profit_lock_trigger_pips=t.profit_lock_trigger_pips,
            profit_lock_pips=t.profit_lock_pips,
            min_amend_step_pips=t.min_amend_step_pips,
            min_stop_distance_pips=min_stop_distance_pips,
        )

    def condition_params(self) -> ConditionParams:
        c = self.conditions.model_dump()
        return ConditionParams(**{k: v for k, v in c.items() if k not in _GUARD_KEYS})

    def guard_params(self, pip_size: float) -> GuardParams:
        """The tick guard of an instrument (simulate, backtest and the daemon share it)."""
        c = self.conditions
        return GuardParams.for_pip(
            pip_size,
            floor_pips=c.spike_floor_pips,
            multiple=c.spike_multiple,
            max_jump_pips=c.max_tick_jump_pips,
            max_gap_hours=c.max_tick_gap_hours,
            max_clock_ahead_s=c.max_clock_ahead_s,
            reanchor_ticks=c.reanchor_ticks,
        )

    def state_path(self) -> Path:
        """The state directory: [daemon] state_dir, $STATE_DIRECTORY, else a user data dir."""
        raw = self.daemon.state_dir or os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        if raw:
            return Path(raw).expanduser()
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "traild"

    def recording_path(self) -> Path:
        """The tick recorder's folder: ``[feed] record_dir`` (relative: under the state
        directory), else ``<state dir>/ticks``."""
        raw = self.feed.record_dir
        if not raw:
            return self.state_path() / "ticks"
        path = Path(raw).expanduser()
        return path if path.is_absolute() else self.state_path() / path

    def database_url(self) -> str:
        """``[database] url`` with a relative SQLite path placed under the state directory."""
        url = self.database.url
        for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
            if url.startswith(prefix):
                path = url[len(prefix) :]
                if path and not path.startswith("/") and not path.startswith(":memory:"):
                    return prefix + str((self.state_path() / path).resolve())
        return url

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as JSON-able data, secrets masked."""
        data: dict[str, Any] = self.model_dump(mode="json")
        ig = data["broker"]["ig"]
        for key in ("password", "api_key"):
            ig[key] = "**********" if getattr(self.broker.ig, key).get_secret_value() else ""
        data["database"]["url"] = redact_url(self.database.url)
        return data


def _check_epic(table: InstrumentTable, epic: str, where: str, problems: list[str]) -> None:
    try:
        table.resolve(epic)
    except InstrumentError as exc:
        problems.append(f"{where}: {exc}")


@contextmanager
def reading_environ(environ: Mapping[str, str] | None) -> Iterator[None]:
    """Settings built inside read ``environ`` instead of os.environ (None: os.environ)."""
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)
