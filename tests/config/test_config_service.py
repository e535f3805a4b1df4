"""The daemon's view of the database overrides: cheap polls, rejection kept out, reload rebase."""

from __future__ import annotations

from typing import Any

import pytest
from loguru import logger

from traild.config.service import ConfigService
from traild.config.settings import Settings, load
from traild.core.errors import ConfigError
from traild.core.overrides import ConfigOverride

EURUSD = "CS.D.EURUSD.MINI.IP"


class FakeSource:
    """A ConfigSource that counts how often the overrides themselves are read."""

    def __init__(self) -> None:
        self.version = 0
        self.overrides: list[ConfigOverride] = []
        self.full_reads = 0

    def set(self, *overrides: ConfigOverride) -> None:
        self.version += 1
        self.overrides = list(overrides)

    async def config_version(self) -> int:
        return self.version

    async def config_overrides(self) -> tuple[int, list[ConfigOverride]]:
        self.full_reads += 1
        return self.version, list(self.overrides)


@pytest.fixture
def events() -> Any:
    records: list[Any] = []
    handler = logger.add(lambda m: records.append(m.record["extra"]), level="DEBUG")
    yield records
    logger.remove(handler)


def base() -> Settings:
    return load(None, environ={})


async def test_poll_reads_the_overrides_only_when_the_version_moved() -> None:
    source = FakeSource()
    service = ConfigService(base(), source)
    assert await service.start() is service.base
    for _ in range(5):
        assert await service.poll() is None
    assert source.full_reads == 1  # the start; idle polls read only the version
    source.set(ConfigOverride("EURUSD", "regular.stage1_lock", 9.0))
    new = await service.poll()
    assert new is not None and new.stage_config(EURUSD, False).stage1_lock == 9.0
    assert await service.poll() is None and source.full_reads == 2


async def test_an_invalid_database_change_is_rejected_once_and_the_old_settings_stay(
    events: list[dict[str, Any]],
) -> None:
    source = FakeSource()
    service = ConfigService(base(), source)
    await service.start()
    source.set(ConfigOverride("EURUSD", "regular.stage1_lock", 50.0))  # above its trigger
    assert await service.poll() is None
    assert await service.poll() is None
    rejected = [e for e in events if e.get("event") == "config.rejected"]
    assert len(rejected) == 1 and rejected[0]["source"] == "database"
    assert any("pairs.EURUSD.regular" in p for p in rejected[0]["problems"])
    assert service.effective.stage_config(EURUSD, False).stage1_lock == 8.0


async def test_start_refuses_overrides_that_do_not_validate() -> None:
    source = FakeSource()
    source.set(ConfigOverride("trailing", "dynamic_trailing_pairs", ["NOTAPAIR"]))
    with pytest.raises(ConfigError, match=r"trailing\.dynamic_trailing_pairs"):
        await ConfigService(base(), source).start()


async def test_a_reloaded_file_keeps_the_database_overrides() -> None:
    source = FakeSource()
    source.set(ConfigOverride("trailing", "dynamic_trailing_pairs", ["EURUSD"]))
    service = ConfigService(base(), source)
    await service.start()
    reloaded = Settings(trailing={"enable_dynamic_trailing": True})
    effective = service.rebase(reloaded)
    assert effective.trailing.enable_dynamic_trailing is True
    assert effective.trailing.dynamic_trailing_pairs == ["EURUSD"]


async def test_a_reloaded_file_that_contradicts_the_overrides_is_refused_whole() -> None:
    source = FakeSource()
    source.set(ConfigOverride("EURUSD", "regular.stage2_trigger", 24.0))
    service = ConfigService(base(), source)
    await service.start()
    contradicting = Settings(pairs={"EURUSD": {"regular": {"stage1_trigger": 25}}})
    with pytest.raises(ConfigError, match=r"pairs\.EURUSD\.regular"):
        service.rebase(contradicting)
    assert service.base.stage_config(EURUSD, False).stage1_trigger == 20.0  # unchanged


async def test_a_rejected_database_change_applies_once_the_reloaded_file_makes_it_valid(
    events: list[dict[str, Any]],
) -> None:
    source = FakeSource()
    service = ConfigService(base(), source)
    await service.start()
    source.set(ConfigOverride("EURUSD", "regular.stage2_trigger", 45.0))  # above stage 3's 40
    assert await service.poll() is None  # rejected against the file
    fixed = Settings(pairs={"EURUSD": {"regular": {"stage3_trigger": 50}}})
    effective = service.rebase(fixed)  # the operator fixed the file and sent SIGHUP
    stages = effective.stage_config(EURUSD, False)
    assert (stages.stage2_trigger, stages.stage3_trigger) == (45.0, 50.0)
    assert service.effective is effective and service.pending is None
    assert await service.poll() is None and source.full_reads == 2  # nothing more to read
    applied = [e for e in events if e.get("event") == "config.overrides"]
    assert applied and applied[-1]["keys"] == ["pairs.EURUSD.regular.stage2_trigger"]


async def test_a_reload_that_does_not_fix_a_rejected_change_keeps_it_pending() -> None:
    source = FakeSource()
    source.set(ConfigOverride("EURUSD", "regular.stage2_lock", 16.0))
    service = ConfigService(base(), source)
    await service.start()
    source.set(ConfigOverride("EURUSD", "regular.stage2_lock", 31.0))  # above trigger 30
    assert await service.poll() is None
    unrelated = Settings(trailing={"min_amend_step_pips": 1.0})
    effective = service.rebase(unrelated)  # the file applies with the overrides in force
    assert effective.trailing.min_amend_step_pips == 1.0
    assert effective.stage_config(EURUSD, False).stage2_lock == 16.0
    assert service.pending is not None
    fixed = Settings(pairs={"EURUSD": {"regular": {"stage2_trigger": 35}}})
    assert service.rebase(fixed).stage_config(EURUSD, False).stage2_lock == 31.0
