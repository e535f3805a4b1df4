"""The sections of traild's configuration (pydantic models, strict: unknown keys are errors).

`traild.config.settings.Settings` composes them and adds loading, environment and reload."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)


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


DEFAULT_REGULAR = StageFields(
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
DEFAULT_SCALP = StageFields(
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
            out[name] = deep_merge(out[name], item) if name in out else item
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

    def problems(self, where: str = "conditions") -> list[str]:
        """Relations between keys that each look valid alone (``where``: the section's path).

        A minimum history longer than the lookback would never compute the volatility regime
        (every dynamic trade "normal", real-time recalculation never firing); unordered
        percentiles or session hours would label the wrong regime or session."""
        out = []
        if self.regime_min_history > self.regime_lookback:
            out.append(
                f"{where}.regime_min_history ({self.regime_min_history}) must be <= "
                f"{where}.regime_lookback ({self.regime_lookback}): the volatility regime "
                "would never be computed"
            )
        pct = ("low_percentile", "high_percentile", "extreme_percentile")
        values = [getattr(self, k) for k in pct]
        if not values[0] < values[1] < values[2]:
            shown = " < ".join(f"{where}.{k} ({v:g})" for k, v in zip(pct, values, strict=True))
            out.append(f"percentiles must be ordered: {shown}")
        hours = ("asian", "london", "overlap", "new_york")
        starts = [getattr(self, f"{h}_start_hour") for h in hours]
        offsets = [(h - starts[0]) % 24 for h in starts]  # hours after the asian start
        if not 0 < offsets[1] < offsets[2] < offsets[3]:
            shown = ", ".join(
                f"{where}.{h}_start_hour ({v})" for h, v in zip(hours, starts, strict=True)
            )
            out.append(
                "session start hours must be distinct and follow each other around the clock "
                f"as asian -> london -> overlap -> new_york: {shown}"
            )
        return out


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
    login_backoff_max_s: float = Field(300.0, gt=0)


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

    def paper_options(self) -> dict[str, Any]:
        """The paper broker's dealing rule, latency, allowance and fault rates, as the keyword
        arguments both ``PaperBroker(...)`` and a reload's ``PaperBroker.configure`` take."""
        return {
            "latency_ms": self.latency_ms,
            "min_stop_distance_pips": self.min_stop_distance_pips,
            "allowance_per_minute": self.allowance_per_minute,
            "reject_rate": self.fault_reject_rate,
            "timeout_rate": self.fault_timeout_rate,
            "error_rate": self.fault_error_rate,
            "burst_rate": self.fault_burst_rate,
        }


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
    # tick recorder (traild.adapters.recorder): every accepted tick, per epic and UTC day
    record: bool = False
    record_days: int = Field(30, ge=1)
    record_dir: str | None = None  # default: <state dir>/ticks; relative: under the state dir

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
    min_days: int = Field(10, ge=1)  # trading days with closed trades, per method and per pair
    max_dropped_share: float = Field(0.01, ge=0, lt=1)  # undefined resamples tolerated
    confidence: float = Field(0.95, gt=0, lt=1)
    bootstrap_samples: int = Field(1000, ge=100, le=100000)
    bootstrap_seed: int = 1
    # counterfactual replays of closed trades beyond fixed, fixed+lock and dynamic+lock
    counterfactual_variants: list[
        Literal["fixed", "fixed+lock", "dynamic+lock", "dynamic+lock+regime"]
    ] = []
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
    reconcile_stops_s: float = Field(30.0, gt=0)
    # one owner per broker account (issue #22): renewed every third of it; amendments stop a
    # third of it before it would expire unrenewed
    lease_ttl_s: float = Field(10.0, ge=0.5, le=3600)


def redact_url(url: str) -> str:
    """A database URL with its password (``user:password@``) masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:**********@{host}"))


def deep_merge(base: Any, update: Any) -> Any:
    """``update`` laid over ``base``, mapping by mapping (a leaf in ``update`` wins)."""
    if isinstance(base, Mapping) and isinstance(update, Mapping):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = deep_merge(merged[key], value) if key in merged else value
        return merged
    return update
