"""Settings for regime-specific stages and real-time recalculation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from traild.config.settings import load
from traild.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "traild.toml"
    path.write_text(text, encoding="utf-8")
    return load(path, environ or {})


def test_defaults_have_no_regime_tables_and_recalculation_off(tmp_path: Path) -> None:
    s = _load(tmp_path, "")
    assert s.trailing.realtime_recalc is False and s.trailing.realtime_regime_shift == 2
    assert s.regime_tables("CS.D.EURUSD.MINI.IP", False) == {}
    assert s.conditions.adx_period == 14 and s.conditions.er_period == 10


def test_the_commented_example_in_the_shipped_file_is_valid_when_uncommented(
    tmp_path: Path,
) -> None:
    text = (REPO_ROOT / "config" / "traild.toml").read_text(encoding="utf-8")
    marker = "The plan's intent, as an example:\n"
    head, block = text.split(marker, 1)
    block, tail = block.split("\n\n", 1)
    example = head + marker + re.sub(r"(?m)^# ", "", block) + "\n\n" + tail
    s = _load(tmp_path, example)
    tables = s.regime_tables("CS.D.EURUSD.MINI.IP", False)
    assert set(tables) == {"trending", "ranging", "breakout"}
    assert tables["trending"]["stage3_min_distance"] == 15
    assert s.regime_tables("CS.D.EURUSD.MINI.IP", True) == {}


def test_regime_tables_merge_default_symbol_and_epic_key_by_key(tmp_path: Path) -> None:
    s = _load(
        tmp_path,
        "[pairs.DEFAULT.regular.regimes.Trending]\nstage3_min_distance = 12\nstage3_trigger = 45\n"
        "[pairs.EURUSD.regular.regimes.trending]\nstage3_min_distance = 15\n"
        '[pairs."CS.D.EURUSD.MINI.IP".regular.regimes.ranging]\nstage1_lock = 6\n',
        {"TRAILD_PAIRS__DEFAULT__REGULAR__REGIMES__BREAKOUT__EARLY_BE_TRIGGER": "18"},
    )
    eurusd = s.regime_tables("CS.D.EURUSD.MINI.IP", False)
    assert eurusd == {
        "trending": {"stage3_min_distance": 15, "stage3_trigger": 45},
        "ranging": {"stage1_lock": 6},
        "breakout": {"early_be_trigger": 18},
    }
    assert s.regime_tables("CS.D.GBPUSD.MINI.IP", False)["trending"]["stage3_min_distance"] == 12


def test_an_inconsistent_regime_table_is_rejected_with_its_key_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "[pairs.DEFAULT.scalp.regimes.ranging]\nstage1_trigger = 40\n")
    assert any(p.startswith("pairs.DEFAULT.scalp.regimes.ranging:") for p in info.value.problems)
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "[pairs.DEFAULT.regular.regimes.trending]\nstage9 = 1\n")
    assert any("stage9" in p and "unknown key" in p for p in info.value.problems)


def test_realtime_regime_shift_must_be_one_to_three_levels(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "[trailing]\nrealtime_recalc = true\nrealtime_regime_shift = 4\n")
    assert any("realtime_regime_shift" in p for p in info.value.problems)
