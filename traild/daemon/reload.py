"""What a SIGHUP reload can apply to a running daemon, and what needs a restart.

Every settings key is one or the other. ``RESTART_REQUIRED`` lists the paths (a section, a
dict of sections, or a single key) that a running daemon cannot change: the database it is
connected to, the broker and feed it opened, its state directory, the instrument table its
actors trail with, and the bar/condition parameters its price histories were built with
(the tick-guard thresholds apply live). A
reload keeps their old values in force and reports them as ``restart_required``; every other
changed key is applied before the next tick and reported in ``changed``. ``LiveConfig``
keeps the settings in force: SIGHUP reloads, the database's overrides and the halt switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from loguru import logger

from traild.adapters import systemd
from traild.config.service import DATABASE, ConfigService
from traild.config.settings import Settings, load
from traild.core.errors import ConfigError, TraildError
from traild.daemon.halt import halt_path
from traild.ports import ConfigSource, TradeStore
from traild.runtime.gateway import Gateway

RESTART_REQUIRED: tuple[str, ...] = (
    "database.url",
    "broker.kind",
    "broker.ig",
    "broker.fault_seed",
    "feed.kind",
    "feed.files",
    "feed.epics",
    "feed.speed",
    "feed.stop_at_end",
    "feed.record",
    "feed.record_days",
    "feed.record_dir",
    "feed.synthetic_epics",
    "feed.synthetic_seed",
    "feed.synthetic_ticks_per_second",
    "feed.synthetic_interval_ms",
    "daemon.state_dir",
    "daemon.lease_ttl_s",
    "instruments",
    # the bar/condition parameters the price histories were built with; the tick-guard keys
    # (max_tick_jump_pips, spike_*, max_tick_gap_hours, max_clock_ahead_s, reanchor_ticks)
    # apply live: each guard takes the new thresholds and keeps its anchor
    *(
        f"conditions.{key}"
        for key in (
            "atr_period",
            "bar_minutes",
            "regime_lookback",
            "regime_min_history",
            "extreme_percentile",
            "high_percentile",
            "low_percentile",
            "asian_start_hour",
            "london_start_hour",
            "overlap_start_hour",
            "new_york_start_hour",
        )
    ),
)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """The settings to run with, and the changed keys split by whether they took effect."""

    effective: Settings
    applied: list[str]
    restart_required: list[str]


def needs_restart(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in RESTART_REQUIRED)


def plan_reload(old: Settings, new: Settings) -> ReloadPlan:
    """``new`` with every restart-only setting kept at its ``old`` value."""
    changed = changed_keys(old.redacted(), new.redacted())
    effective = new
    for path in RESTART_REQUIRED:
        effective = _keep(effective, old, path.split("."))
    return ReloadPlan(
        effective,
        [k for k in changed if not needs_restart(k)],
        [k for k in changed if needs_restart(k)],
    )


def _keep(new: Any, old: Any, path: list[str]) -> Any:
    """``new`` with the attribute at ``path`` taken from ``old`` (frozen pydantic models)."""
    head, rest = path[0], path[1:]
    value = getattr(old, head) if not rest else _keep(getattr(new, head), getattr(old, head), rest)
    return new.model_copy(update={head: value})


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves that differ between two JSON-like trees (a section only on
    one side counts as empty on the other: its changed leaves are listed, not the section)."""
    if isinstance(old, dict) and new is None:
        new = {}
    if isinstance(new, dict) and old is None:
        old = {}
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def apply_live(s: Settings, store: TradeStore | None, gateway: Gateway) -> None:
    """The reloaded store, broker and gateway values, handed to the running objects."""
    from traild.adapters.paper import PaperBroker
    from traild.adapters.store import SqlTradeStore

    if isinstance(store, SqlTradeStore):
        store.set_write_timeout(s.database.write_timeout_s)
    b = s.broker
    if isinstance(gateway.broker, PaperBroker):
        gateway.broker.configure(**b.paper_options())
    allowance = gateway.broker.allowance_per_minute() or b.allowance_per_minute
    gateway.configure(allowance, b.retry_base_s, b.retry_max_s)


class LiveConfig:
    """The settings in force while the daemon runs: the file's (read again on SIGHUP) with the
    database's overrides (polled), and the global halt switch (config or HALT file).

    ``apply(settings)`` hands changed settings to the running parts; ``set_halted(on)`` the
    switch. Keys a running daemon cannot change keep their old values (``restart_required``).
    """

    def __init__(
        self,
        settings: Settings,
        path: str | None,
        apply: Callable[[Settings], None],
        set_halted: Callable[[bool], None],
    ) -> None:
        self.settings = settings
        self.path = path
        self.service = ConfigService(settings, None)
        self.halted = False
        self._apply = apply
        self._set_halted = set_halted

    async def start(self, source: ConfigSource | None) -> Settings:
        """The file's settings with the database's overrides (ConfigError: refuse to start)."""
        self.service = ConfigService(self.settings, source)
        self.settings = await self.service.start()
        return self.settings

    async def reload(self) -> None:
        """SIGHUP: re-read file and environment; reject invalid config as a whole. Keys a
        running daemon cannot change keep their old values and are reported as
        ``restart_required``; every other changed key is applied at once."""
        systemd.reloading()
        try:
            new = await trio.to_thread.run_sync(load, self.path)
        except ConfigError as exc:
            logger.bind(event="config.rejected", problems=exc.problems).error(
                "configuration rejected; keeping the old one"
            )
            systemd.ready("config rejected: " + "; ".join(exc.problems)[:200])
            return
        try:
            new = self.service.rebase(new)
        except ConfigError as exc:
            logger.bind(event="config.rejected", source=DATABASE, problems=exc.problems).error(
                "file and database configuration do not agree; keeping the old one"
            )
            systemd.ready("config rejected: " + "; ".join(exc.problems)[:200])
            return
        self.swap(new, "file")
        systemd.ready("config reloaded")

    async def poll(self) -> None:
        """Database overrides changed by ``traild config set``: applied like a reload."""
        try:
            new = await self.service.poll()
        except TraildError as exc:
            logger.bind(event="store.degraded", error=str(exc)).warning("config poll failed")
            return
        if new is not None:
            self.swap(new, DATABASE)

    def swap(self, new: Settings, source: str) -> None:
        """Every actor applies ``new`` before its next tick; confirmed stops never loosen."""
        plan = plan_reload(self.settings, new)
        self.settings = plan.effective
        self._apply(plan.effective)
        self.check_halt()
        logger.bind(
            event="config.reloaded",
            source=source,
            changed=plan.applied,
            restart_required=plan.restart_required,
            config_version=self.service.version,
        ).info("configuration reloaded")

    def check_halt(self, initial: bool = False) -> None:
        """The global kill switch from the settings and the HALT file (logged on a change)."""
        halted = self.settings.daemon.halt or halt_path(self.settings).exists()
        if halted != self.halted or (initial and halted):
            self.halted = halted
            self._set_halted(halted)
            logger.bind(
                event="killswitch.engaged" if halted else "killswitch.released", switch="halt"
            ).warning("global halt " + ("on" if halted else "off"))

    async def halt_loop(self) -> None:
        """The kill switch in its own loop: it never waits on the database, the feed or the
        store poll."""
        while True:
            await trio.sleep(self.settings.database.poll_interval_s)
            self.check_halt()
