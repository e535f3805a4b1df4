"""SIGHUP reload, key by key: every settings key is either applied to the running daemon or
reported as ``restart_required`` (and then keeps its old value) — never listed as applied
without taking effect."""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import trio
from loguru import logger
from pydantic import BaseModel, SecretStr

from traild.adapters.paper import PaperBroker
from traild.adapters.store import SqlTradeStore, migrate_database
from traild.config.settings import Settings, load
from traild.daemon.app import Daemon
from traild.daemon.reload import needs_restart

EPIC = "CS.D.EURUSD.MINI.IP"
SAMPLE_KEYS = {
    "pairs": "DEFAULT",
    "instruments": "EURUSD",
    "regimes": "trending",
}  # a key of each dict section
# Values the generic rule below would get wrong (ranges, cross-field rules, formats).
VALUES: dict[str, Any] = {
    "pairs.DEFAULT.regular.regimes.trending.early_be_trigger": 16,
    "pairs.DEFAULT.regular.regimes.trending.early_be_buffer": 3,
    "pairs.DEFAULT.regular.regimes.trending.stage1_trigger": 21,
    "pairs.DEFAULT.regular.regimes.trending.stage1_lock": 9,
    "pairs.DEFAULT.regular.regimes.trending.stage2_trigger": 31,
    "pairs.DEFAULT.regular.regimes.trending.stage2_lock": 16,
    "pairs.DEFAULT.regular.regimes.trending.stage3_trigger": 41,
    "pairs.DEFAULT.regular.regimes.trending.stage3_atr_multiplier": 1.1,
    "pairs.DEFAULT.regular.regimes.trending.stage3_min_distance": 11,
    "pairs.DEFAULT.scalp.regimes.trending.early_be_trigger": 11,
    "pairs.DEFAULT.scalp.regimes.trending.early_be_buffer": 2,
    "pairs.DEFAULT.scalp.regimes.trending.stage1_trigger": 13,
    "pairs.DEFAULT.scalp.regimes.trending.stage1_lock": 6,
    "pairs.DEFAULT.scalp.regimes.trending.stage2_trigger": 16,
    "pairs.DEFAULT.scalp.regimes.trending.stage2_lock": 11,
    "pairs.DEFAULT.scalp.regimes.trending.stage3_trigger": 21,
    "pairs.DEFAULT.scalp.regimes.trending.stage3_atr_multiplier": 0.9,
    "pairs.DEFAULT.scalp.regimes.trending.stage3_min_distance": 6,
    "trailing.atr_min_multiplier": 0.9,
    "rollout.confidence": 0.9,
    "rollout.counterfactual_variants": ["dynamic+lock+regime"],
    "conditions.extreme_percentile": 95.0,
    "instruments.EURUSD.pip_size": 0.001,
    "instruments.EURUSD.tick_size": 0.0001,
    "conditions.asian_start_hour": 22,
    "database.url": "sqlite+aiosqlite:///elsewhere.db",
    "broker.kind": "ig",
    "broker.ig.tlcp_version": "2.5.0",
    "broker.ig.api_url": "https://api.ig.com/gateway/deal",
    "broker.ig.stream_url": "https://apd.marketdatasystems.com",
    "feed.kind": "synthetic",
    "feed.files": ["elsewhere.csv"],
    "feed.speed": 2.0,
    "feed.epics": ["CS.D.GBPUSD.MINI.IP"],
}
# Keys that only make sense changed together with others (all must be reported the same way).
ALSO: dict[str, dict[str, Any]] = {
    "broker.kind": {
        "broker.ig.identifier": "someone",
        "broker.ig.password": "pw",
        "broker.ig.api_key": "key",
    },
}


def _leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, annotation, default) of every leaf setting."""
    for name, field in model.model_fields.items():
        path, ann = f"{prefix}{name}", field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _leaves(ann, path + ".")
        elif get_origin(ann) is dict:
            value = get_args(ann)[1]
            yield from _leaves(value, f"{path}.{SAMPLE_KEYS[name]}.")
        else:
            yield path, ann, field.default


def _changed_value(key: str, ann: Any, default: Any) -> Any:
    if key in VALUES:
        return VALUES[key]
    if key.startswith("pairs."):  # a stage field: half a pip off the built-in default
        kind, field = key.split(".")[-2:]
        stages = Settings().stage_config(EPIC, kind == "scalp")
        return float(getattr(stages, field)) + 0.5
    kinds = set(get_args(ann)) - {type(None)} if _is_union(ann) else {ann}
    kind = next(iter(kinds))
    if get_origin(kind) is Literal:
        return next(c for c in get_args(kind) if c != default)
    if kind is bool:
        return not default
    if kind is int:
        return (default or 0) + 1
    if kind in (float, Decimal):
        return 0.5 if not default else float(default) * 1.25
    if get_origin(kind) is list:
        return [EPIC]
    if kind in (str, SecretStr):
        return "changed"
    raise AssertionError(f"{key}: no rule for {ann!r}; add it to VALUES")


def _is_union(ann: Any) -> bool:
    return get_origin(ann) in (Union, types.UnionType)


def _toml(values: dict[str, Any]) -> str:
    sections: dict[str, list[str]] = {}
    for key, value in values.items():
        section, name = key.rsplit(".", 1)
        sections.setdefault(section, []).append(f"{name} = {json.dumps(value)}")
    return "".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items())


def _get(settings: Any, key: str) -> Any:
    for part in key.split("."):
        if settings is None:
            return None  # a dict section without that key
        settings = settings.get(part) if isinstance(settings, dict) else getattr(settings, part)
    return settings.get_secret_value() if isinstance(settings, SecretStr) else settings


CASES = [(key, ann, default) for key, ann, default in _leaves(Settings)]


def test_every_settings_key_is_covered() -> None:
    keys = {key for key, _, _ in CASES}
    assert {"broker.fault_reject_rate", "daemon.heartbeat_s", "database.write_timeout_s"} <= keys
    assert any(k.startswith("instruments.") for k in keys)
    assert all(needs_restart(k) for k in keys if k.startswith(("instruments.", "broker.ig.")))


@pytest.fixture
def ticks(tmp_path: Path) -> Path:
    path = tmp_path / "ticks.csv"
    rows = [f"2024-05-01T00:00:{s:02d}.000Z,1.10000,1.10010" for s in range(60)]
    path.write_text("ts_utc,bid,ask\n" + "\n".join(rows) + "\n")
    return path


async def test_each_key_is_applied_live_or_reported_restart_required(
    tmp_path: Path, ticks: Path
) -> None:
    state = tmp_path / "state"
    base = {
        "feed.kind": "replay",
        "feed.files": [str(ticks)],
        "feed.epics": [EPIC],
        "feed.speed": 1.0,
        "daemon.state_dir": str(state),
    }
    config = tmp_path / "traild.toml"
    config.write_text(_toml(base))
    records: list[dict[str, Any]] = []
    handler = logger.add(lambda m: records.append(dict(m.record["extra"])), level="INFO")
    try:
        with trio.fail_after(120):
            settings = load(str(config))
            state.mkdir()
            await migrate_database(settings.database_url())
            daemon = Daemon(settings, str(config))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(daemon.run)
                await _until_running(daemon)
                for key, ann, default in CASES:
                    changes = {key: _changed_value(key, ann, default), **ALSO.get(key, {})}
                    config.write_text(_toml({**base, **changes}))
                    await daemon.reload()
                    _check(key, changes, records[-1], daemon, settings)
                    config.write_text(_toml(base))
                    await daemon.reload()
                nursery.cancel_scope.cancel()
    finally:
        logger.remove(handler)


async def _until_running(daemon: Daemon) -> None:
    while daemon.supervisor is None:  # noqa: ASYNC110 - the daemon offers no event for it
        await trio.sleep(0.01)


def _check(
    key: str, changes: dict[str, Any], record: dict[str, Any], daemon: Daemon, old: Settings
) -> None:
    assert record["event"] == "config.reloaded", (key, record)
    for changed in changes:
        if needs_restart(changed):
            assert changed in record["restart_required"] and changed not in record["changed"]
            assert _get(daemon.settings, changed) == _get(old, changed), changed
        else:
            assert changed in record["changed"] and changed not in record["restart_required"]
            assert _get(daemon.settings, changed) == _get(load_like(changes), changed), changed
    _live_effect(key, changes[key], daemon)


def load_like(changes: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in changes.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = Decimal(str(value)) if key.startswith("instruments.") else value
    return tree


def _live_effect(key: str, value: Any, daemon: Daemon) -> None:
    """The running parts, not only the settings object, took the value."""
    gateway, supervisor = daemon.gateway, daemon.supervisor
    assert gateway is not None and supervisor is not None
    broker, store = gateway.broker, daemon._store
    assert isinstance(broker, PaperBroker) and isinstance(store, SqlTradeStore)
    effects: dict[str, Any] = {
        "broker.fault_reject_rate": lambda: broker._faults.rates.reject,
        "broker.fault_error_rate": lambda: broker._faults.rates.error,
        "broker.fault_timeout_rate": lambda: broker._faults.rates.timeout,
        "broker.fault_burst_rate": lambda: broker._faults.rates.burst,
        "broker.latency_ms": lambda: broker._faults.latency * 1000,
        "broker.min_stop_distance_pips": lambda: supervisor.policy.ladder.min_stop_distance_pips,
        "broker.retry_base_s": lambda: gateway.retry_base,
        "broker.retry_max_s": lambda: gateway.retry_max,
        "broker.allowance_per_minute": lambda: gateway.bucket.capacity,
        "database.write_timeout_s": lambda: store.write_timeout,
        "daemon.persist_best_every_s": lambda: supervisor.policy.persist_every_s,
        "daemon.restart_budget": lambda: supervisor.policy.restart_budget,
        "trailing.min_amend_step_pips": lambda: supervisor.policy.ladder.min_amend_step_pips,
        "daemon.halt": lambda: gateway.halted,
    }
    if key in effects:
        assert effects[key]() == pytest.approx(value), key
