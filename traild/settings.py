"""Settings: one TOML file plus ``TRAILD_*`` environment (env wins), validated as a whole.

``load()`` returns a valid Settings or raises one ConfigError listing every bad key path.
Unknown keys are errors, in the file and in the environment. Secrets are SecretStr and are
redacted by ``redacted()``.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from traild.core.calculator import CalculatorParams, StageConfig
from traild.core.conditions import ConditionParams, GuardParams
from traild.core.errors import ConfigError, InstrumentError
from traild.core.instruments import InstrumentOverride, InstrumentTable
from traild.core.ladder import LadderPolicy
from traild.settings_env import (
    ENV_PREFIX,
    EnvSource,
    MappingEnvSource,
    env_parse_problem,
    from_env,
    is_setting_var,
)

DEFAULT_CONFIG = Path("config/traild.toml")
_ENV_PREFIX = ENV_PREFIX
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Regimes(_Strict):
    """Volatility multipliers of regular trades; a partial table keeps the other defaults."""

    low: float = Field(0.7, gt=0)
    normal: float = Field(1.0, gt=0)
    high: float = Field(1.3, gt=0)
    extreme: float = Field(1.6, gt=0)


class ScalpRegimes(Regimes):
    """Volatility multipliers of scalp trades (tighter)."""

    low: float = Field(0.6, gt=0)
    normal: float = Field(0.8, gt=0)
    high: float = Field(1.0, gt=0)
    extreme: float = Field(1.2, gt=0)


class Sessions(_Strict):
    asian: float = Field(0.9, gt=0)
    london: float = Field(1.1, gt=0)
    new_york: float = Field(1.1, gt=0)
    overlap: float = Field(1.2, gt=0)


class TrailingSettings(_Strict):
    enable_dynamic_trailing: bool = False
    enable_session_adjustment: bool = True
    enable_guaranteed_profit_lock: bool = True
    profit_lock_trigger_pips: float = Field(10.0, gt=0)
    profit_lock_pips: float = Field(1.0, ge=0)
    force_fixed_trailing_pairs: list[str] = []
    dynamic_trailing_pairs: list[str] = []
    atr_min_multiplier: float = Field(0.8, gt=0)
    atr_max_multiplier: float = Field(4.0, gt=0)
    min_amend_step_pips: float = Field(0.5, ge=0)
    atr_clamp: Literal["ladder", "per_stage"] = "ladder"
    realtime_recalc: bool = False
    realtime_regime_shift: int = Field(2, ge=1, le=3)
    stage_alert_min_pips: float = Field(1.0, ge=0)
    stage_alert_max_pips: float = Field(200.0, gt=0)
    volatility_multipliers: Regimes = Regimes()
    scalp_volatility_multipliers: ScalpRegimes = ScalpRegimes()
    session_multipliers: Sessions = Sessions()

    @model_validator(mode="after")
    def _check(self) -> TrailingSettings:
        if self.atr_min_multiplier > self.atr_max_multiplier:
            raise ValueError("atr_min_multiplier must be <= atr_max_multiplier")
        if self.profit_lock_pips >= self.profit_lock_trigger_pips:
            raise ValueError("profit_lock_pips must be below profit_lock_trigger_pips")
        if self.stage_alert_min_pips > self.stage_alert_max_pips:
            raise ValueError("stage_alert_min_pips must be <= stage_alert_max_pips")
        return self


class StageFields(_Strict):
    """A stage config or a partial override of one (pips; None = inherit from DEFAULT)."""

    early_be_trigger: float | None = Field(None, gt=0)
    early_be_buffer: float | None = Field(None, ge=0)
    stage1_trigger: float | None = Field(None, gt=0)
    stage1_lock: float | None = Field(None, ge=0)
    stage2_trigger: float | None = Field(None, gt=0)
    stage2_lock: float | None = Field(None, ge=0)
    stage3_trigger: float | None = Field(None, gt=0)
    stage3_atr_multiplier: float | None = Field(None, ge=0)
    stage3_min_distance: float | None = Field(None, gt=0)


_DEFAULT_REGULAR = StageFields(
    early_be_trigger=15,
    early_be_buffer=2,
    stage1_trigger=20,
    stage1_lock=8,
    stage2_trigger=30,
    stage2_lock=15,
    stage3_trigger=40,
    stage3_atr_multiplier=1.0,
    stage3_min_distance=10,
)
_DEFAULT_SCALP = StageFields(
    early_be_trigger=10,
    early_be_buffer=1,
    stage1_trigger=12,
    stage1_lock=5,
    stage2_trigger=15,
    stage2_lock=10,
    stage3_trigger=20,
    stage3_atr_multiplier=0.8,
    stage3_min_distance=5,
)


class KindStages(StageFields):
    """A pair's regular or scalp stages plus optional per-market-regime overrides
    (``[pairs.<EPIC|DEFAULT>.<regular|scalp>.regimes.<market_regime>]``, any subset of keys)."""

    regimes: dict[str, StageFields] = {}

    @field_validator("regimes", mode="before")
    @classmethod
    def _regime_names(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key.strip().lower() if isinstance(key, str) else key
            if not isinstance(name, str) or not name.replace("_", "").isalnum():
                raise ValueError(f"market regime name {key!r}: letters, digits and _ only")
            out[name] = _deep_merge(out[name], item) if name in out else item
        return out


class PairStages(_Strict):
    regular: KindStages = KindStages()
    scalp: KindStages = KindStages()


class ConditionsSettings(_Strict):
    atr_period: int = Field(14, ge=1, le=500)
    bar_minutes: int = Field(15, ge=1, le=1440)
    regime_lookback: int = Field(96, ge=1, le=10000)
    regime_min_history: int = Field(20, ge=1)
    extreme_percentile: float = Field(90, ge=0, le=100)
    high_percentile: float = Field(70, ge=0, le=100)
    low_percentile: float = Field(20, ge=0, le=100)
    asian_start_hour: int = Field(21, ge=0, le=23)
    london_start_hour: int = Field(7, ge=0, le=23)
    overlap_start_hour: int = Field(12, ge=0, le=23)
    new_york_start_hour: int = Field(16, ge=0, le=23)
    max_tick_jump_pips: float = Field(500.0, gt=0)
    adx_period: int = Field(14, ge=1, le=200)
    er_period: int = Field(10, ge=1, le=500)
    spike_floor_pips: float = Field(40.0, gt=0)
    spike_multiple: float = Field(100.0, gt=0)
    max_tick_gap_hours: float = Field(96.0, gt=0)
    max_clock_ahead_s: float = Field(300.0, gt=0)
    reanchor_ticks: int = Field(5, ge=2, le=1000)

    @model_validator(mode="after")
    def _check_guard(self) -> ConditionsSettings:
        if self.spike_floor_pips > self.max_tick_jump_pips:
            raise ValueError("spike_floor_pips must be <= max_tick_jump_pips")
        return self


class InstrumentSettings(_Strict):
    pip_size: Decimal | None = Field(None, gt=0)
    tick_size: Decimal | None = Field(None, gt=0)
    broker_scale: int | None = Field(None, ge=1)
    min_stop_distance_pips: Decimal | None = Field(None, ge=0)


class DatabaseSettings(_Strict):
    url: str = "sqlite+aiosqlite:///traild.db"
    write_timeout_s: float = Field(2.0, gt=0)
    poll_interval_s: float = Field(1.0, gt=0)

    @field_validator("url")
    @classmethod
    def _supported(cls, url: str) -> str:
        """SQLite or PostgreSQL (the store's drivers: aiosqlite, asyncpg); found here, not at
        the first connection."""
        scheme, sep, _ = url.partition("://")
        backend, _, driver = scheme.lower().partition("+")
        wanted = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
        if not sep or backend not in wanted or driver not in ("", wanted[backend]):
            raise ValueError(
                f"unsupported database URL {redact_url(url)!r}: expected sqlite+aiosqlite:///PATH"
                " or postgresql+asyncpg://USER@HOST/DB"
            )
        return url


class IGSettings(_Strict):
    api_url: str = "https://demo-api.ig.com/gateway/deal"
    stream_url: str = ""
    identifier: str = ""
    password: SecretStr = SecretStr("")
    api_key: SecretStr = SecretStr("")
    account_id: str = ""
    request_timeout_s: float = Field(10.0, gt=0)
    positions_poll_s: float = Field(5.0, gt=0)
    trade_stream: bool = True
    reconcile_s: float = Field(300.0, gt=0)
    tlcp_version: str = Field("2.4.0", pattern=r"^(TLCP-)?\d+\.\d+\.\d+$")
    take_over_guaranteed_stops: bool = False
    take_over_trailing_stops: bool = False
    session_refresh_s: float = Field(21600.0, gt=0)
    confirm_attempts: int = Field(10, ge=1)
    confirm_interval_s: float = Field(0.2, gt=0)
    rules_ttl_s: float = Field(21600.0, gt=0)
    trading_allowance: int | None = Field(None, ge=1)
    account_allowance: int | None = Field(None, ge=1)
    application_allowance: int | None = Field(None, ge=1)
    keepalive_ms: int = Field(5000, ge=100)
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)


class BrokerSettings(_Strict):
    kind: Literal["paper", "ig"] = "paper"
    latency_ms: float = Field(0, ge=0)
    min_stop_distance_pips: float = Field(0, ge=0)
    allowance_per_minute: int = Field(60, ge=1)
    retry_base_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(30.0, gt=0)
    fault_reject_rate: float = Field(0.0, ge=0, le=1)
    fault_timeout_rate: float = Field(0.0, ge=0, le=1)
    fault_error_rate: float = Field(0.0, ge=0, le=1)
    fault_burst_rate: float = Field(0.0, ge=0, le=1)
    fault_seed: int = 0
    ig: IGSettings = IGSettings()


class FeedSettings(_Strict):
    kind: Literal["synthetic", "replay", "ig"] = "synthetic"
    files: list[str] = []
    epics: list[str] = []
    speed: float = Field(0.0, ge=0)
    stop_at_end: bool = False
    synthetic_epics: list[str] = [
        "CS.D.EURUSD.MINI.IP",
        "CS.D.GBPUSD.MINI.IP",
        "CS.D.USDJPY.MINI.IP",
        "CS.D.AUDUSD.MINI.IP",
    ]
    synthetic_seed: int = 7
    synthetic_ticks_per_second: float = Field(50.0, gt=0)
    synthetic_interval_ms: float = Field(0.0, ge=0)
    stale_after_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> FeedSettings:
        if self.kind == "ig" and not self.epics:
            raise ValueError("feed.kind = 'ig' needs feed.epics (the markets to stream)")
        if self.kind == "replay":
            if not self.files:
                raise ValueError("feed.kind = 'replay' needs feed.files")
            if len(self.files) != len(self.epics):
                raise ValueError("feed.files and feed.epics must have the same length")
        return self


class BacktestSettings(_Strict):
    """Defaults of ``traild backtest`` random entries and metrics."""

    stop_pips: float = Field(20.0, gt=0)
    limit_pips: float = Field(50.0, gt=0)
    scalp_stop_pips: float = Field(10.0, gt=0)
    scalp_limit_pips: float = Field(25.0, gt=0)
    scalp_share: float = Field(0.5, ge=0, le=1)
    lookahead_minutes: float = Field(60.0, gt=0)
    bar_spread_pips: float = Field(1.0, ge=0)  # --bars without ask bars: ask = bid + spread


class RolloutSettings(_Strict):
    """The plan's rollout gate (``traild rollout status``, ``report --vs-backtest``)."""

    improvement_threshold: float = Field(0.10, ge=0, le=10)
    min_trades: int = Field(30, ge=1)
    confidence: float = Field(0.95, gt=0, lt=1)
    bootstrap_samples: int = Field(1000, ge=100, le=100000)
    bootstrap_seed: int = 1
    backtest_dynamic_variant: str = "dynamic+lock"
    backtest_fixed_variant: str = "fixed+lock"


class DaemonSettings(_Strict):
    halt: bool = False
    state_dir: str | None = None
    heartbeat_s: float = Field(30.0, gt=0)
    restart_budget: int = Field(5, ge=0)
    restart_backoff_s: float = Field(0.5, gt=0)
    restart_backoff_max_s: float = Field(30.0, gt=0)
    dynamic_failures_before_fixed: int = Field(2, ge=1)
    drain_timeout_s: float = Field(5.0, gt=0)
    persist_best_every_s: float = Field(1.0, ge=0)


class Settings(BaseSettings):
    """The whole configuration (SPEC §4)."""

    model_config = SettingsConfigDict(
        env_prefix=_ENV_PREFIX,
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
            out[canon] = _deep_merge(out[canon], item) if canon in out else item
        return out

    @model_validator(mode="after")
    def _check_pairs(self) -> Settings:
        problems: list[str] = []
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
        if self._stage_owner != id(self):  # a model_copy shares the dict: start its own
            self._stage_cache, self._stage_owner = {}, id(self)
        key = (epic, is_scalp)
        found = self._stage_cache.get(key)
        if found is None:
            found = self._stage_cache[key] = self._resolve_stages(epic, is_scalp)
        return found

    def _resolve_stages(self, epic: str, is_scalp: bool) -> StageConfig:
        kind = "scalp" if is_scalp else "regular"
        merged = (_DEFAULT_SCALP if is_scalp else _DEFAULT_REGULAR).model_dump()
        for layer in self._pair_layers(epic):
            fields = getattr(layer, kind).model_dump(exclude={"regimes"})
            merged.update({k: v for k, v in fields.items() if v is not None})
        return StageConfig.from_dict(merged)

    def regime_tables(self, epic: str, is_scalp: bool) -> dict[str, dict[str, float]]:
        """Per-market-regime overrides for ``epic``: DEFAULT's, then its symbol's, then its
        own, key by key (only the keys set; the calculator lays them over the base)."""
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


def redact_url(url: str) -> str:
    """A database URL with its password (``user:password@``) masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:**********@{host}"))


def _deep_merge(base: Any, update: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(update, Mapping):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = _deep_merge(merged[key], value) if key in merged else value
        return merged
    return update


def _check_epic(table: InstrumentTable, epic: str, where: str, problems: list[str]) -> None:
    try:
        table.resolve(epic)
    except InstrumentError as exc:
        problems.append(f"{where}: {exc}")


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
        with _reading(environ):
            settings = Settings(**data)
    except ValidationError as exc:
        problems += [from_env(_describe(err), ours) for err in exc.errors()]
    except SettingsError as exc:
        problems.append(env_parse_problem(exc, ours))
    if problems:
        raise ConfigError(problems, source)
    _reject_non_finite(settings.model_dump(), "", problems)
    if problems:
        raise ConfigError(problems, source)
    return settings


@contextmanager
def _reading(environ: Mapping[str, str] | None) -> Iterator[None]:
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def _describe(err: Any) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key"
    return f"{loc}: {msg}" if loc else msg  # whole-model problems name their keys themselves


def _reject_non_finite(data: Any, path: str, problems: list[str]) -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            _reject_non_finite(v, f"{path}.{k}" if path else str(k), problems)
    elif isinstance(data, float) and not math.isfinite(data):
        problems.append(f"{path}: must be a finite number")


def _unknown_env_keys(env: Mapping[str, str]) -> list[str]:
    """``TRAILD_*`` variables that name no setting (TRAILD_CONFIG is the file path)."""
    problems = []
    for name in env:
        upper = name.upper()
        if not upper.startswith(_ENV_PREFIX) or upper == "TRAILD_CONFIG":
            continue
        parts = upper[len(_ENV_PREFIX) :].lower().split("__")
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
