"""``traild rollout status``, ``report --vs-backtest`` and ``report --html`` on a real SQLite
database of constructed closed trades (known answers), as an operator runs them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest
import trio

from traild.adapters.store import open_store
from traild.cli import main
from traild.core.messages import Direction, TradeRecord, TradeStatus
from traild.reporting.html import SECTIONS

EURUSD, GBPUSD = "CS.D.EURUSD.MINI.IP", "CS.D.GBPUSD.MINI.IP"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=90)


def closed(n: int, epic: str, method: str, pnl: float, day0: int) -> list[TradeRecord]:
    """BUY trades from 1.10000, best price +20 pips, the profit lock 6 minutes after entry."""
    out = []
    for i in range(n):
        opened = T0 + timedelta(days=day0 + i)
        out.append(
            TradeRecord(
                f"{epic}-{method}-{i}", epic, Direction.BUY, entry_price=1.1,
                sl_price=1.1001, status=TradeStatus.CLOSED, opened_at=opened,
                closed_at=opened + timedelta(hours=1), exit_price=1.1 + pnl / 10000,
                exit_reason="stop", pnl_pips=pnl, best_price=1.102,
                trailing_calculation_method=method,
                fallback_reason=None if method == "dynamic_volatility" else "not_in_rollout",
                profit_lock_applied_at=opened + timedelta(minutes=6),
            )
        )  # fmt: skip
    return out


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "traild.toml"
    path.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "t.db"}"\n'
        f'[daemon]\nstate_dir = "{tmp_path}"\n'
        '[trailing]\nenable_dynamic_trailing = true\ndynamic_trailing_pairs = ["EURUSD"]\n'
        "[rollout]\nbootstrap_samples = 200\n"
    )
    trades = (
        closed(30, EURUSD, "dynamic_volatility", 12.0, 0)
        + closed(30, EURUSD, "fixed", 10.0, 40)
        + closed(5, GBPUSD, "fixed", -3.0, 0)
    )

    async def seed() -> None:
        async with open_store(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", migrate=True) as store:
            for t in trades:
                await store.add_trade(t)

    trio.run(seed)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_rollout_status_judges_the_pilot_and_recommends_widening(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "rollout", "status", "--json", "--config", config)
    status = json.loads(out)
    pairs = {p["pair"]: p for p in status["pairs"]}
    assert pairs[EURUSD]["stage"] == "dynamic_on"
    assert pairs[EURUSD]["gate"]["verdict"] == "met"
    assert pairs[EURUSD]["gate"]["improvement_pct"]["value"] == 20.0
    assert (pairs[GBPUSD]["stage"], pairs[GBPUSD]["fixed_reason"]) == (
        "fixed_only",
        "not_in_rollout",
    )
    assert status["recommendation"].startswith("widen to three pairs")
    code, out, _ = run(capsys, "rollout", "status", "--config", config)
    assert code == 0 and "dynamic_on" in out and "widen to three pairs" in out


def test_database_allowlist_moves_the_rollout_stage(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "config", "set", "trailing", "dynamic_trailing_pairs=EURUSD,GBPUSD", "--config",
        config)  # fmt: skip
    status = json.loads(run(capsys, "rollout", "status", "--json", "--config", config)[1])
    assert {p["pair"]: p["stage"] for p in status["pairs"]} == {
        EURUSD: "widened",
        GBPUSD: "widened",
    }


def test_report_vs_backtest_compares_live_trades_with_the_summary(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    variant = {"win_rate": 0.6, "profit_capture_pct": 60.0, "protected_share": 1.0,
               "median_minutes_to_lock": 6.0}  # fmt: skip
    (tmp_path / "bt").mkdir()
    (tmp_path / "bt" / "summary.json").write_text(json.dumps({"variants": {
        "fixed+lock": {**variant, "expectancy_pips": 10.0},
        "dynamic+lock": {**variant, "expectancy_pips": 11.0},
    }}))  # fmt: skip
    code, out, _ = run(
        capsys, "report", "--since", "all", "--vs-backtest", str(tmp_path / "bt"), "--json",
        "--config", config,
    )  # fmt: skip
    result = json.loads(out)
    assert result["predicted_improvement_pct"] == 10.0
    dyn = result["groups"][EURUSD]["dynamic_volatility"]["metrics"]
    assert dyn["expectancy_pips"]["value"] == 12.0 and dyn["expectancy_pips"]["consistent"] is False
    assert dyn["profit_capture_pct"]["value"] == 60.0  # 12 of 20 pips
    assert dyn["protected_share"]["consistent"] is True
    assert dyn["median_minutes_to_lock"]["value"] == 6.0
    assert result["groups"][EURUSD]["gate"]["verdict"] == "met"
    code, out, _ = run(capsys, "report", "--since", "all", "--vs-backtest", str(tmp_path / "bt"),
                       "--config", config)  # fmt: skip
    assert code == 0 and "profit_capture_pct" in out and "gate: met" in out
    code, out, err = run(capsys, "report", "--vs-backtest", str(tmp_path / "none"), "--config",
                         config)  # fmt: skip
    assert code == 1 and err.count("\n") == 1 and "no backtest summary" in err


class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.svgs = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("id"):
            self.ids.append(str(a["id"]))
        self.svgs += tag == "svg"
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(str(a[key]))


def test_html_report_is_one_self_contained_file_with_every_section(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "report.html"
    code, out, _ = run(
        capsys, "report", "--since", "all", "--html", str(target), "--config", config
    )
    assert code == 0 and str(target) in out
    page = target.read_text()
    parser = _Sections()
    parser.feed(page)
    parser.close()
    assert parser.ids == list(SECTIONS)
    assert parser.svgs == 5 and parser.external == []
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org', "")
    assert "dynamic_on" in page and "not_in_rollout" in page and "widen to three pairs" in page
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):  # well-formed XML, as browsers need
        assert ElementTree.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser:  # rendered by a real browser when one is installed
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", target.as_uri()],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert all(f'id="{s}"' in dom for s in SECTIONS) and "<svg" in dom


def test_html_report_with_a_backtest_adds_its_section(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    variant = {"expectancy_pips": 10.0, "win_rate": 0.6}
    (tmp_path / "s.json").write_text(
        json.dumps({"variants": {"fixed+lock": variant, "dynamic+lock": variant}})
    )
    target = tmp_path / "r.html"
    run(capsys, "report", "--since", "all", "--vs-backtest", str(tmp_path / "s.json"), "--html",
        str(target), "--config", config)  # fmt: skip
    parser = _Sections()
    parser.feed(target.read_text())
    assert parser.ids == [*SECTIONS, "backtest"]
