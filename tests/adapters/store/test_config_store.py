"""The configuration service's tables and ``traild config`` on SQLite and PostgreSQL:
round trip, refusal with the key path, the audit trail, concurrent edits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from traild.adapters.store import ConfigConflict, SqlTradeStore
from traild.cli import main
from traild.config.service import apply_overrides
from traild.config.settings import load
from traild.core.overrides import ConfigOverride

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> str:
    path = tmp_path / "traild.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n\n[daemon]\nstate_dir = "{tmp_path}"\n'
        "[pairs.EURUSD.regular]\nstage1_trigger = 22\n"
    )
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_changes_round_trip_with_their_audit_rows(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        cs = store.config_store()
        assert await cs.config_version() == 0
        written = await cs.apply_changes(
            {("EURUSD", "regular.stage1_lock"): 9.5, ("trailing", "dynamic_trailing_pairs"): ["X"]},
            "alice",
            T0,
            expected_version=0,
        )
        assert [(c.path, c.old, c.new, c.changed_by) for c in written] == [
            ("pairs.EURUSD.regular.stage1_lock", None, 9.5, "alice"),
            ("trailing.dynamic_trailing_pairs", None, ["X"], "alice"),
        ]
        version, overrides = await cs.config_overrides()
        assert version == written[-1].id == await cs.config_version()
        assert {(o.scope, o.key, json.dumps(o.value), o.updated_by) for o in overrides} == {
            ("EURUSD", "regular.stage1_lock", "9.5", "alice"),
            ("trailing", "dynamic_trailing_pairs", '["X"]', "alice"),
        }
        assert overrides[0].updated_at == T0
        again = await cs.apply_changes(
            {("EURUSD", "regular.stage1_lock"): None}, "bob", T0, expected_version=version
        )
        assert [(c.old, c.new, c.changed_by) for c in again] == [(9.5, None, "bob")]
        assert [o.key for o in (await cs.config_overrides())[1]] == ["dynamic_trailing_pairs"]
        history = await cs.config_history()
        assert [c.id for c in history] == sorted(c.id for c in history) and len(history) == 3
        assert [c.new for c in await cs.config_history("EURUSD", limit=1)] == [None]


async def test_a_change_against_a_stale_version_is_refused(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        cs = store.config_store()
        await cs.apply_changes({("EURUSD", "regular.stage1_lock"): 9}, "a", T0, 0)
        with pytest.raises(ConfigConflict, match="changed meanwhile"):
            await cs.apply_changes({("EURUSD", "regular.stage1_lock"): 7}, "b", T0, 0)
        assert (await cs.config_overrides())[1][0].value == 9


async def test_of_two_concurrent_changes_from_the_same_version_exactly_one_lands(
    store: SqlTradeStore,
) -> None:
    outcomes: list[str] = []

    async def change(value: float) -> None:
        try:
            await store.config_store().apply_changes(
                {("EURUSD", "regular.stage1_lock"): value}, "x", T0, 0
            )
            outcomes.append("written")
        except ConfigConflict:
            outcomes.append("conflict")

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(change, 7.0)
            nursery.start_soon(change, 9.0)
        assert sorted(outcomes) == ["conflict", "written"]
        assert len(await store.config_store().config_history()) == 1


async def test_setting_the_same_value_writes_no_audit_row(store: SqlTradeStore) -> None:
    with trio.fail_after(30):
        cs = store.config_store()
        await cs.apply_changes({("EURUSD", "regular.stage1_lock"): 9}, "a", T0, 0)
        version = await cs.config_version()
        assert (
            await cs.apply_changes({("EURUSD", "regular.stage1_lock"): 9}, "a", T0, version) == []
        )
        assert await cs.config_version() == version


def test_config_set_show_history_round_trip(
    config: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "migrate", "--config", config)[0] == 0
    code, out, _ = run(
        capsys, "config", "set", "cs.d.eurusd.mini.ip", "regular.stage1_lock=9.5",
        "scalp.stage1_trigger=13", "--by", "alice", "--config", config,
    )  # fmt: skip
    assert code == 0 and "pairs.CS.D.EURUSD.MINI.IP.regular.stage1_lock: unset -> 9.5" in out
    code, out, _ = run(
        capsys, "config", "show", "CS.D.EURUSD.MINI.IP", "--json", "--config", config
    )
    shown = json.loads(out)
    assert shown["regular"]["stage1_lock"] == {
        "value": 9.5, "key": "pairs.CS.D.EURUSD.MINI.IP.regular.stage1_lock", "source": "database",
    }  # fmt: skip
    assert shown["regular"]["stage1_trigger"] == {
        "value": 22.0, "key": "pairs.EURUSD.regular.stage1_trigger", "source": "file",
    }  # fmt: skip
    assert shown["regular"]["stage2_lock"]["source"] == "default"
    assert shown["rollout"] == {"stage": "fixed_only", "fixed_reason": "disabled"}
    assert shown["scalp"]["stage1_trigger"]["value"] == 13.0
    calc = run(capsys, "calc", "--epic", "CS.D.EURUSD.MINI.IP", "--scalp", "--json",
               "--config", config)  # fmt: skip
    assert json.loads(calc[1])["stages"]["stage1_trigger"] == 13.0  # calc sees the database too
    code, out, _ = run(capsys, "config", "history", "--json", "--config", config)
    history = json.loads(out)
    assert [(h["key"], h["old"], h["new"], h["changed_by"]) for h in history] == [
        ("pairs.CS.D.EURUSD.MINI.IP.regular.stage1_lock", None, 9.5, "alice"),
        ("pairs.CS.D.EURUSD.MINI.IP.scalp.stage1_trigger", None, 13, "alice"),
    ]
    code, out, _ = run(capsys, "config", "unset", "CS.D.EURUSD.MINI.IP", "regular.stage1_lock",
                       "--config", config)  # fmt: skip
    assert code == 0 and "9.5 -> unset (effective 8.0)" in out
    code, out, _ = run(capsys, "check-config", "--config", config)
    effective = json.loads(out)
    assert effective["pairs"]["CS.D.EURUSD.MINI.IP"]["scalp"]["stage1_trigger"] == 13.0
    code, out, _ = run(capsys, "check-config", "--sources", "--config", config)
    lines = {line.split()[0]: line.split()[-1] for line in out.splitlines()}
    assert lines["pairs.CS.D.EURUSD.MINI.IP.scalp.stage1_trigger"] == "database"
    assert lines["pairs.EURUSD.regular.stage1_trigger"] == "file"
    assert lines["trailing.profit_lock_pips"] == "default"


REFUSED = [
    (["EURUSD", "regular.stage1_lock=-1"], "pairs.EURUSD.regular.stage1_lock"),
    (["EURUSD", "regular.stage1_lock=abc"], "pairs.EURUSD.regular.stage1_lock"),
    (["EURUSD", "regular.stage1_lock=30"], "pairs.EURUSD.regular"),  # lock above its trigger
    (["IX.D.FTSE.DAILY.IP", "regular.stage1_lock=3"], "pairs.IX.D.FTSE.DAILY.IP"),
    (["trailing", "dynamic_trailing_pairs=EURUSD,NOPE"], "trailing.dynamic_trailing_pairs"),
]
# Argument errors (a mistyped or non-editable key, a table, no '='): exit 2, like argparse's.
REFUSED_USAGE = [
    (["EURUSD", "regular.stage1_lokc=3"], "pairs.EURUSD.regular.stage1_lokc"),
    (["trailing", "enable_dynamic_trailing=true"], "trailing.enable_dynamic_trailing"),
    (["EURUSD", "regular={stage1_lock = 3}"], "pairs.EURUSD.regular"),
    (["EURUSD", "regular.stage1_lock"], "'regular.stage1_lock': expected KEY=VALUE"),
]


def test_invalid_values_are_refused_with_the_key_path_and_nothing_is_written(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "migrate", "--config", config)
    for argv, path, want in [(*r, 1) for r in REFUSED] + [(*r, 2) for r in REFUSED_USAGE]:
        code, out, err = run(capsys, "config", "set", *argv, "--config", config)
        assert code == want and out == "", argv
        assert err.count("\n") == 1 and path in err and "Traceback" not in err, err
    code, out, _ = run(capsys, "config", "history", "--json", "--config", config)
    assert json.loads(out) == []


def test_unset_of_a_mistyped_key_or_pair_is_refused_and_the_override_stays(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "migrate", "--config", config)
    code, _, _ = run(capsys, "config", "set", "EURUSD", "regular.stage1_lock=9", "--config", config)
    assert code == 0
    code, out, err = run(capsys, "config", "unset", "EURUSD", "regular.stage1_lok",
                         "--config", config)  # fmt: skip
    assert (code, out) == (2, "") and "did you mean regular.stage1_lock?" in err
    code, out, err = run(capsys, "config", "unset", "CS.D.EURUSD.MINI.IP", "regular.stage1_lock",
                         "--config", config)  # fmt: skip
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "pairs.EURUSD.regular.stage1_lock is: unset that pair's key" in err
    code, out, _ = run(capsys, "config", "show", "EURUSD", "--json", "--config", config)
    assert json.loads(out)["regular"]["stage1_lock"]["value"] == 9  # still in force
    code, out, _ = run(capsys, "config", "unset", "GBPUSD", "regular.stage1_lock",
                       "--config", config)  # fmt: skip
    assert code == 0 and out.startswith("no change")  # a valid key nobody overrode
    code, out, _ = run(capsys, "config", "unset", "EURUSD", "regular.stage1_lock",
                       "--config", config)  # fmt: skip
    assert code == 0 and "9 -> unset" in out


def test_database_overrides_that_no_longer_fit_the_file_are_reported_by_check_config(
    config: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(capsys, "migrate", "--config", config)
    assert (
        run(capsys, "config", "set", "EURUSD", "regular.stage2_trigger=24", "--config", config)[0]
        == 0
    )
    text = Path(config).read_text().replace("stage1_trigger = 22", "stage1_trigger = 25")
    Path(config).write_text(text)  # the file now puts stage 1 above the database's stage 2
    code, _, err = run(capsys, "check-config", "--config", config)
    assert code == 1 and "in database" in err and "pairs.EURUSD.regular" in err


def test_overrides_are_validated_by_the_file_models() -> None:
    base = load(None, environ={})
    tighter = apply_overrides(base, [ConfigOverride("GBPUSD", "regular.stage1_lock", 10)])
    assert tighter.stage_config("CS.D.GBPUSD.MINI.IP", False).stage1_lock == 10
    assert tighter.stage_config("CS.D.EURUSD.MINI.IP", False).stage1_lock == 8
    assert apply_overrides(base, []) is base
