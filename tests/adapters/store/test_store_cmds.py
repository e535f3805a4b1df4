"""``traild migrate``, ``traild report`` and ``traild trade add`` against SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from tests.adapters.store.store_helpers import trade
from traild.adapters.store import open_store, schema
from traild.cli import main
from traild.cli.args import since
from traild.core.messages import Direction, TradeRecord, TradeStatus

NOW = datetime.now(UTC).replace(microsecond=0)
REPORT_KEYS = {
    "open", "closed", "pending", "unmanaged", "methods", "fallback_reasons", "trades", "journal",
}  # fmt: skip
TRADE_KEYS = {
    "deal_id", "epic", "direction", "status", "entry_price", "sl_price", "exit_price",
    "exit_reason", "pnl_pips", "method", "fallback_reason", "opened_at", "closed_at",
}  # fmt: skip


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> str:
    path = tmp_path / "traild.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n\n[daemon]\nstate_dir = "{tmp_path}"\n')
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def seed(url: str, *trades: TradeRecord) -> None:
    async def add() -> None:
        async with open_store(url) as store:
            for record in trades:
                await store.add_trade(record)

    trio.run(add)


def stored(url: str, deal_id: str) -> TradeRecord | None:
    async def get() -> TradeRecord | None:
        async with open_store(url) as store:
            return await store.get_trade_by_deal(deal_id)

    return trio.run(get)


def test_migrate_brings_the_database_to_head_and_prints_the_revision(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "migrate", "--config", config)
    assert code == 0 and f"revision {schema.head_revision()} (head)" in out
    assert run(capsys, "migrate", "--config", config)[:2] == (0, out)


def test_commands_on_an_unmigrated_database_say_to_run_migrate(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "report", "--config", config)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "run `traild migrate`" in err


def test_trade_add_records_a_pending_trade_with_relative_stop(
    config: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "migrate", "--config", config)
    code, out, _ = run(
        capsys, "trade", "add", "--config", config, "--epic", "CS.D.GBPUSD.MINI.IP",
        "--direction", "sell", "--size", "2", "--stop-pips", "15", "--limit-pips", "30.5",
        "--scalp",
    )  # fmt: skip
    assert code == 0
    deal_id = out.strip()
    assert deal_id.startswith("TRAILD-") and len(deal_id) == len("TRAILD-") + 32
    recorded = stored(db_url, deal_id)
    assert recorded is not None
    assert (recorded.status, recorded.direction, recorded.size) == (
        TradeStatus.PENDING, Direction.SELL, 2.0
    )  # fmt: skip
    assert (recorded.stop_pips, recorded.limit_pips, recorded.is_scalp_trade) == (15, 30.5, True)
    assert (recorded.entry_price, recorded.sl_price, recorded.opened_at) == (None, None, None)


def test_trade_add_with_absolute_stop_limit_and_alert(
    config: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "migrate", "--config", config)
    args = ["trade", "add", "--config", config, "--epic", "EURUSD", "--direction", "BUY"]
    code, _, err = run(capsys, *args, "--stop", "1.0985", "--alert-id", "5")
    assert code == 1 and "no alert_history row with id 5" in err
    code, out, _ = run(capsys, *args, "--stop", "1.0985", "--limit", "1.1035")
    recorded = stored(db_url, out.strip())
    assert recorded is not None
    assert (recorded.sl_price, recorded.initial_sl_price, recorded.limit_price) == (
        1.0985, 1.0985, 1.1035
    )  # fmt: skip
    assert recorded.stop_pips is None and recorded.size == 1.0


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--epic", "NOTAPAIR", "--direction", "BUY", "--stop-pips", "10"], 1, "NOTAPAIR"),
        (["--epic", "EURUSD", "--direction", "UP", "--stop-pips", "10"], 2, "direction"),
        (["--epic", "EURUSD", "--direction", "BUY"], 2, "--stop-pips"),
        (["--epic", "EURUSD", "--direction", "BUY", "--stop-pips", "10", "--stop", "1.1"], 2,
         "not allowed with"),
        (["--epic", "EURUSD", "--direction", "BUY", "--stop-pips", "-3"], 2, "positive"),
    ],
    ids=["unknown-epic", "bad-direction", "no-stop", "two-stops", "negative-stop"],
)  # fmt: skip
def test_trade_add_refuses_bad_input_with_one_line(
    config: str, capsys: pytest.CaptureFixture[str], extra: list[str], code: int, message: str
) -> None:
    if code == 2:  # argparse refuses it before any database work
        with pytest.raises(SystemExit) as exit_info:
            main(["trade", "add", "--config", config, *extra])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
    else:
        run(capsys, "migrate", "--config", config)
        got, _, err = run(capsys, "trade", "add", "--config", config, *extra)
        assert got == 1
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def _report_trades() -> list[TradeRecord]:
    return [
        trade("DYN-WIN", status=TradeStatus.CLOSED, opened_at=NOW - timedelta(hours=5),
              closed_at=NOW - timedelta(hours=4), exit_price=1.100123456, exit_reason="stop",
              pnl_pips=12.345, trailing_calculation_method="dynamic_volatility"),
        trade("FIX-LOSS", status=TradeStatus.CLOSED, opened_at=NOW - timedelta(hours=3),
              closed_at=NOW - timedelta(hours=2), exit_price=1.0985, exit_reason="stop",
              pnl_pips=-15.0, trailing_calculation_method="fixed", fallback_reason="no_atr"),
        trade("FIX-OPEN", opened_at=NOW - timedelta(hours=1), trailing_calculation_method="fixed",
              fallback_reason="no_atr"),
        trade("OLD", status=TradeStatus.CLOSED, opened_at=NOW - timedelta(days=30),
              trailing_calculation_method="fixed", fallback_reason="disabled", pnl_pips=3.0),
        trade("JPY", epic="CS.D.USDJPY.MINI.IP", status=TradeStatus.PENDING, opened_at=None,
              entry_price=None, sl_price=151.23456, stop_pips=20.0),
    ]  # fmt: skip


def test_report_json_counts_methods_and_fallbacks(
    config: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "migrate", "--config", config)
    seed(db_url, *_report_trades())
    code, out, _ = run(capsys, "report", "--config", config, "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report) == REPORT_KEYS
    # open = managed open trades; the pending JPY trade is counted on its own
    assert (report["open"], report["closed"], report["pending"], report["unmanaged"]) == (
        1,
        2,
        1,
        0,
    )
    assert report["methods"] == {"dynamic_volatility": 1, "fixed": 2, "unassigned": 1}
    assert report["fallback_reasons"] == {"no_atr": 2}
    entries = {t["deal_id"]: t for t in report["trades"]}
    assert list(entries) == ["DYN-WIN", "FIX-LOSS", "FIX-OPEN", "JPY"]
    assert all(set(t) == TRADE_KEYS for t in report["trades"])
    win = entries["DYN-WIN"]
    assert (win["exit_price"], win["pnl_pips"], win["method"]) == (
        1.10012, 12.35, "dynamic_volatility"
    )  # fmt: skip
    assert win["opened_at"] == (NOW - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert entries["JPY"]["sl_price"] == 151.235 and entries["JPY"]["opened_at"] is None
    everything = json.loads(run(capsys, "report", "--config", config, "--json", "--since",
                                "all")[1])  # fmt: skip
    assert (everything["closed"], everything["fallback_reasons"]["disabled"]) == (3, 1)
    since_date = (NOW - timedelta(days=40)).date().isoformat()
    dated = json.loads(run(capsys, "report", "--config", config, "--json", "--since",
                           since_date)[1])  # fmt: skip
    assert dated == everything
    recent = json.loads(run(capsys, "report", "--config", config, "--json", "--since", "90m")[1])
    assert [t["deal_id"] for t in recent["trades"]] == ["FIX-OPEN", "JPY"]


def test_report_over_an_empty_window_says_where_the_trades_are(
    config: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "migrate", "--config", config)
    replayed = trade("OLD-1", opened_at=datetime(2014, 5, 6, 8, 0, tzinfo=UTC))
    seed(db_url, replayed)
    code, out, err = run(capsys, "report", "--config", config)
    assert code == 0 and "0 open, 0 closed" in out
    assert err.startswith("traild: note: no trade opened since ") and err.count("\n") == 1
    assert "the database holds 1, the latest opened at 2014-05-06T08:00:00.000Z" in err
    assert "traild report --since all" in err
    code, out, err = run(capsys, "report", "--config", config, "--since", "all")
    assert code == 0 and err == ""


def test_report_table_shows_outcomes_by_method(
    config: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "migrate", "--config", config)
    seed(db_url, *_report_trades())
    code, out, _ = run(capsys, "report", "--config", config)
    assert code == 0
    assert "1 open, 2 closed, 1 pending" in out
    assert "fallback reasons: no_atr 2" in out
    lines = out.splitlines()
    dynamic = next(line for line in lines if line.startswith("dynamic_volatility "))
    assert dynamic.split() == ["dynamic_volatility", "1", "100.0", "12.35", "12.35"]
    fixed = next(line for line in lines if line.startswith("fixed "))
    assert fixed.split() == ["fixed", "1", "0.0", "-15.00", "-15.00"]
    assert any(line.startswith("FIX-OPEN") and "fixed (no_atr)" in line for line in lines)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("1.5D", timedelta(days=1.5)),
    ],
)
def test_since_accepts_ages(text: str, expected: timedelta) -> None:
    start = since(text)
    assert start is not None
    assert abs(datetime.now(UTC) - expected - start) < timedelta(seconds=60)


def test_since_accepts_iso_dates_and_all() -> None:
    assert since("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert since("2024-05-01T10:00:00+02:00") == datetime(2024, 5, 1, 8, tzinfo=UTC)
    assert since("all") is None
    with pytest.raises(argparse.ArgumentTypeError, match="--since wants"):
        since("yesterday")


def test_report_says_what_waits_in_the_daemons_journal(
    config: str, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #20: records a stopped daemon left in its journal are reported with their age."""
    from traild.adapters.store import display_url
    from traild.adapters.store.journal import Journal, journal_dir

    run(capsys, "migrate", "--config", config)
    journal = Journal(journal_dir(tmp_path, display_url(db_url)))
    journal.open()
    journal.append({"k": "close", "trade_id": 1})
    journal.append({"k": "progress", "prices": [[1, 1.1]]})
    journal.close()
    code, out, _ = run(capsys, "report", "--config", config, "--json")
    assert code == 0
    waiting = json.loads(out)["journal"]
    assert waiting["pending"] == 2 and waiting["oldest_s"] >= 0 and waiting["bytes"] > 0
    _, text, _ = run(capsys, "report", "--config", config)
    assert "journal: 2 record(s) not yet in the database" in text
