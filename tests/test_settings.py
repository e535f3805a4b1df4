"""Settings: TOML + environment (env wins), strict keys, pair overrides, redaction."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from traild.config.settings import Settings, load
from traild.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
_OTHER_VARIABLES = ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "XDG_STATE_HOME")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TRAILD_* variables or credentials from the caller; no config/ in the cwd."""
    for name in list(os.environ):
        if name.upper().startswith("TRAILD_") or name in (
            "CREDENTIALS_DIRECTORY",
            "STATE_DIRECTORY",
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "traild.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path | None = None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path, environ)
    return info.value.problems


# -- defaults and the shipped example --------------------------------------------------------------
def test_without_a_file_the_embedded_defaults_apply() -> None:
    s = load()
    assert s.trailing.enable_dynamic_trailing is False
    assert s.trailing.profit_lock_trigger_pips == 10 and s.trailing.profit_lock_pips == 1
    assert s.trailing.min_amend_step_pips == 0.5
    assert s.stage_config("DEFAULT", False).early_be_trigger == 15
    assert s.stage_config("DEFAULT", True).stage3_min_distance == 5
    assert s.broker.kind == "paper" and s.feed.kind == "synthetic"


def test_the_shipped_example_file_is_valid_and_documents_the_defaults() -> None:
    example, default = load(REPO_ROOT / "config" / "traild.toml"), load()
    assert {**example.redacted(), "pairs": None} == {**default.redacted(), "pairs": None}
    for scalp in (False, True):
        assert example.stage_config("DEFAULT", scalp) == default.stage_config("DEFAULT", scalp)


def test_traild_config_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[trailing]\nprofit_lock_pips = 2\n", "other.toml")
    monkeypatch.setenv("TRAILD_CONFIG", str(path))
    assert load().trailing.profit_lock_pips == 2


# -- precedence ------------------------------------------------------------------------------------
def test_environment_wins_over_the_file_and_the_rest_of_the_file_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        "[trailing]\nenable_dynamic_trailing = false\nenable_session_adjustment = false\n",
    )
    monkeypatch.setenv("TRAILD_TRAILING__ENABLE_DYNAMIC_TRAILING", "true")
    s = load(path)
    assert s.trailing.enable_dynamic_trailing is True
    assert s.trailing.enable_session_adjustment is False


def test_an_explicit_environment_mapping_is_the_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[trailing]\nenable_dynamic_trailing = false\n")
    monkeypatch.setenv("TRAILD_TRAILING__PROFIT_LOCK_PIPS", "3")
    s = load(path, {"TRAILD_TRAILING__ENABLE_DYNAMIC_TRAILING": "true"})
    assert s.trailing.enable_dynamic_trailing is True
    assert s.trailing.profit_lock_pips == 1  # os.environ is not consulted


def test_environment_overrides_one_multiplier_and_keeps_the_others(tmp_path: Path) -> None:
    s = load(
        None,
        {
            "TRAILD_TRAILING__VOLATILITY_MULTIPLIERS__LOW": "0.65",
            "TRAILD_TRAILING__SCALP_VOLATILITY_MULTIPLIERS__HIGH": "0.95",
        },
    )
    assert s.trailing.volatility_multipliers.model_dump() == {
        "low": 0.65,
        "normal": 1.0,
        "high": 1.3,
        "extreme": 1.6,
    }
    assert s.trailing.scalp_volatility_multipliers.model_dump() == {
        "low": 0.6,
        "normal": 0.8,
        "high": 0.95,
        "extreme": 1.2,
    }


def test_a_partial_multiplier_table_in_the_file_keeps_the_other_defaults(tmp_path: Path) -> None:
    s = load(write(tmp_path, "[trailing.scalp_volatility_multipliers]\nlow = 0.5\n"))
    assert s.calculator_params().scalp_volatility_multipliers == {
        "low": 0.5,
        "normal": 0.8,
        "high": 1.0,
        "extreme": 1.2,
    }


def test_environment_can_override_one_default_stage_field(tmp_path: Path) -> None:
    path = write(tmp_path, "[pairs.DEFAULT.regular]\nearly_be_trigger = 14\nearly_be_buffer = 3\n")
    s = load(path, {"TRAILD_PAIRS__DEFAULT__REGULAR__EARLY_BE_TRIGGER": "12"})
    stages = s.stage_config("CS.D.EURUSD.MINI.IP", False)
    assert (stages.early_be_trigger, stages.early_be_buffer) == (12, 3)


def test_secrets_come_from_systemd_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "broker__ig__password").write_text("pw-from-creds")
    s = load(None, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.broker.ig.password.get_secret_value() == "pw-from-creds"


# -- strict keys ---------------------------------------------------------------------------------
def test_unknown_keys_in_the_file_are_named_by_their_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bogus = 1\n[trailing]\nenable_dynamic_trailng = true\n"
        "[trailing.session_multipliers]\nsydney = 0.8\n[broker.ig]\ntoken = 'x'\n",
    )
    assert sorted(problems_of(path)) == [
        "bogus: unknown key",
        "broker.ig.token: unknown key",
        "trailing.enable_dynamic_trailng: unknown key",
        "trailing.session_multipliers.sydney: unknown key",
    ]


def test_unknown_environment_variables_are_named(tmp_path: Path) -> None:
    problems = problems_of(
        None,
        {
            "TRAILD_TRAILNG__ENABLE_DYNAMIC_TRAILING": "true",
            "TRAILD_TRAILING__VOLATILITY_MULTIPLIERS__LOWW": "1",
            "TRAILD_CONFIG": "ignored",  # the file path, not a setting
            "OTHER_VARIABLE": "ignored",
        },
    )
    assert "environment TRAILD_TRAILNG__ENABLE_DYNAMIC_TRAILING: unknown key" in problems
    assert "environment TRAILD_TRAILING__VOLATILITY_MULTIPLIERS__LOWW: unknown key" in problems
    assert not any("OTHER_VARIABLE" in p or "TRAILD_CONFIG" in p for p in problems)


def test_unknown_keys_below_a_pair_or_instrument_in_the_environment_are_named() -> None:
    problems = problems_of(
        None,
        {
            "TRAILD_PAIRS__DEFAULT__REGULAR__BOGUS": "1",
            "TRAILD_INSTRUMENTS__EURUSD__TICKSIZE": "0.1",
        },
    )
    assert sorted(problems) == [
        "instruments.EURUSD.ticksize (from TRAILD_INSTRUMENTS__EURUSD__TICKSIZE): unknown key",
        "pairs.DEFAULT.regular.bogus (from TRAILD_PAIRS__DEFAULT__REGULAR__BOGUS): unknown key",
    ]


def test_one_error_lists_every_bad_key_of_file_and_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[trailing]\nprofit_lock_trigger_pips = -1\natr_min_multiplier = 'wide'\n"
        "[broker]\nkind = 'oanda'\n[feed]\nspeed = -2\n",
    )
    with pytest.raises(ConfigError) as info:
        load(path, {"TRAILD_NOPE": "1"})
    keys = {p.split(":")[0] for p in info.value.problems}
    assert keys == {
        "environment TRAILD_NOPE",
        "trailing.profit_lock_trigger_pips",
        "trailing.atr_min_multiplier",
        "broker.kind",
        "feed.speed",
    }
    message = str(info.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[trailing]\nprofit_lock_trigger_pips = inf\n", "trailing.profit_lock_trigger_pips"),
        ("[trailing]\nprofit_lock_pips = 12\n", "trailing"),
        ("[trailing]\natr_min_multiplier = 5.0\n", "trailing"),
        ("[trailing.volatility_multipliers]\nlow = 0\n", "trailing.volatility_multipliers.low"),
        ("[feed]\nkind = 'replay'\n", "feed"),
        ("[feed]\nkind = 'replay'\nfiles = ['a.csv']\nepics = []\n", "feed"),
        ("[trailing]\nforce_fixed_trailing_pairs = ['IX.D.FTSE.DAILY.IP']\n", "trailing"),
        ("[feed]\nsynthetic_epics = ['FTSE']\n", "feed.synthetic_epics"),
    ],
)
def test_invalid_values_are_rejected_with_their_key(tmp_path: Path, toml: str, key: str) -> None:
    problems = problems_of(write(tmp_path, toml))
    assert any(p.startswith(key) for p in problems), problems


def test_invalid_toml_is_one_readable_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[trailing\nenable_dynamic_trailing = true\n")
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith("TOML syntax") and "line 1" in problems[0]


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "nope.toml")
    assert problems == [f"config file not found: {tmp_path / 'nope.toml'}"]


# -- pairs -----------------------------------------------------------------------------------------
PAIRS = """
[pairs.DEFAULT.regular]
early_be_trigger = 14
[pairs.GBPUSD.regular]
stage1_trigger = 22
stage1_lock = 9
[pairs."CS.D.GBPUSD.MINI.IP".regular]
stage1_trigger = 24
[pairs."CS.D.USDJPY.MINI.IP".scalp]
stage3_min_distance = 6
"""


def test_pair_overrides_merge_over_default_field_by_field(tmp_path: Path) -> None:
    s = load(write(tmp_path, PAIRS))
    usdjpy = s.stage_config("CS.D.USDJPY.MINI.IP", False)
    assert (usdjpy.early_be_trigger, usdjpy.stage1_trigger) == (14, 20)  # DEFAULT + file
    assert s.stage_config("CS.D.USDJPY.MINI.IP", True).stage3_min_distance == 6
    assert s.stage_config("CS.D.USDJPY.MINI.IP", True).stage3_trigger == 20  # scalp default


def test_epic_override_wins_over_symbol_override_which_wins_over_default(tmp_path: Path) -> None:
    s = load(write(tmp_path, PAIRS))
    mini = s.stage_config("CS.D.GBPUSD.MINI.IP", False)
    assert (mini.early_be_trigger, mini.stage1_trigger, mini.stage1_lock) == (14, 24, 9)
    ceem = s.stage_config("CS.D.GBPUSD.CEEM.IP", False)
    assert (ceem.stage1_trigger, ceem.stage1_lock) == (22, 9)


def test_pair_keys_are_case_insensitive(tmp_path: Path) -> None:
    s = load(write(tmp_path, "[pairs.gbpusd.regular]\nstage1_trigger = 22\n"))
    assert s.stage_config("CS.D.GBPUSD.MINI.IP", False).stage1_trigger == 22


def test_inconsistent_fixed_stages_are_rejected_with_their_key_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[pairs.DEFAULT.regular]\nstage1_trigger = 35\n"
        '[pairs."CS.D.USDJPY.MINI.IP".scalp]\nstage1_lock = 12\n',
    )
    problems = problems_of(path)
    assert "pairs.DEFAULT.regular: need stage1_trigger < stage2_trigger < stage3_trigger" in (
        "; ".join(problems)
    )
    assert "pairs.CS.D.USDJPY.MINI.IP.scalp: need 0 <= stage1_lock < stage1_trigger" in (
        "; ".join(problems)
    )
    assert "(root)" not in "; ".join(problems)
    assert "; ".join(problems).count("pairs.DEFAULT.regular") == 1


def test_a_pair_key_that_is_no_instrument_is_rejected(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "[pairs.FTSE.regular]\nstage1_trigger = 22\n"))
    assert any("pairs.FTSE" in p for p in problems)


def test_a_pair_for_a_configured_instrument_is_accepted(tmp_path: Path) -> None:
    s = load(
        write(
            tmp_path,
            '[instruments."IX.D.FTSE.DAILY.IP"]\npip_size = 1\ntick_size = 0.5\n'
            '[pairs."IX.D.FTSE.DAILY.IP".regular]\nstage3_min_distance = 12\n',
        )
    )
    assert s.instrument_table().resolve("IX.D.FTSE.DAILY.IP").ticks_per_pip == 2
    assert s.stage_config("IX.D.FTSE.DAILY.IP", False).stage3_min_distance == 12


# -- derived values --------------------------------------------------------------------------------
def test_plain_values_for_the_core(tmp_path: Path) -> None:
    s = load(
        write(
            tmp_path,
            "[trailing]\nforce_fixed_trailing_pairs = ['cs.d.gbpusd.mini.ip', 'USDJPY']\n"
            "enable_guaranteed_profit_lock = false\nmin_amend_step_pips = 1.5\n",
        )
    )
    params = s.calculator_params()
    assert params.force_fixed_trailing_pairs == frozenset(["CS.D.GBPUSD.MINI.IP", "USDJPY"])
    assert params.dynamic_trailing_pairs == frozenset()
    policy = s.ladder_policy(2.0)
    assert (policy.profit_lock, policy.min_amend_step_pips, policy.min_stop_distance_pips) == (
        False,
        1.5,
        2.0,
    )


def test_relative_sqlite_paths_live_under_the_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    s = load(write(tmp_path, f"[daemon]\nstate_dir = '{state}'\n"))
    assert s.database_url() == f"sqlite+aiosqlite:///{state.resolve()}/traild.db"
    s = load(write(tmp_path, "[database]\nurl = 'sqlite+aiosqlite:////var/x.db'\n"))
    assert s.database_url() == "sqlite+aiosqlite:////var/x.db"


def test_state_directory_comes_from_systemd_when_not_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/a:{tmp_path}/b")
    assert load().state_path() == tmp_path / "a"


# -- secrets ---------------------------------------------------------------------------------------
def test_secrets_are_redacted_and_never_in_repr(tmp_path: Path) -> None:
    path = write(
        tmp_path, "[database]\nurl = 'postgresql+asyncpg://traild:s3cr3t-db@db.local:5432/traild'\n"
    )
    s = load(
        path,
        {"TRAILD_BROKER__IG__PASSWORD": "hunter2-pw", "TRAILD_BROKER__IG__API_KEY": "k3y-api"},
    )
    assert s.broker.ig.password.get_secret_value() == "hunter2-pw"
    shown = json.dumps(s.redacted())
    for secret in ("hunter2-pw", "k3y-api", "s3cr3t-db"):
        assert secret not in shown
    assert "hunter2-pw" not in repr(s) and "k3y-api" not in repr(s)
    red = s.redacted()
    assert red["broker"]["ig"]["password"] == red["broker"]["ig"]["api_key"] == "**********"
    assert red["database"]["url"] == "postgresql+asyncpg://traild:**********@db.local:5432/traild"


def test_unset_secrets_show_as_empty(tmp_path: Path) -> None:
    red = load().redacted()
    assert red["broker"]["ig"]["password"] == "" and red["database"]["url"].startswith("sqlite")


def test_settings_are_frozen() -> None:
    s = load()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError
        s.trailing.enable_dynamic_trailing = True  # type: ignore[misc]
    assert isinstance(s, Settings)


def test_rollout_allowlist_is_upper_cased_and_its_epics_must_resolve(tmp_path: Path) -> None:
    text = "[trailing]\ndynamic_trailing_pairs = ['eurusd', 'CS.D.GBPUSD.MINI.IP']\n"
    s = load(write(tmp_path, text))
    assert s.calculator_params().dynamic_trailing_pairs == frozenset(
        ["EURUSD", "CS.D.GBPUSD.MINI.IP"]
    )
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, "[trailing]\ndynamic_trailing_pairs = ['IX.D.FTSE.DAILY.IP']\n"))
    assert "trailing.dynamic_trailing_pairs" in str(err.value)


def test_a_copy_with_other_pair_stages_resolves_its_own_not_the_cached_ones(
    tmp_path: Path,
) -> None:
    s = load(write(tmp_path, "[pairs.DEFAULT.regular]\nearly_be_trigger = 14\n"))
    assert s.stage_config("CS.D.EURUSD.MINI.IP", False).early_be_trigger == 14  # now cached
    other = load(write(tmp_path, "[pairs.DEFAULT.regular]\nearly_be_trigger = 11\n"))
    copy = s.model_copy(update={"pairs": other.pairs})
    assert copy.stage_config("CS.D.EURUSD.MINI.IP", False).early_be_trigger == 11
    assert s.stage_config("CS.D.EURUSD.MINI.IP", False).early_be_trigger == 14
