"""``traild ig check`` against the loopback IG: a healthy account and the failures it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapters.ig.conftest import API_KEY, EURUSD, IDENTIFIER, PASSWORD, sim_in_thread
from traild.cli import main
from traild.testing.ig_sim import IGSim, SimMarket, SimPosition


def _config(tmp: Path, sim: IGSim, epic: str = EURUSD, password: str = PASSWORD) -> str:
    path = tmp / "traild.toml"
    path.write_text(
        f"""[broker]
kind = "ig"
[broker.ig]
api_url = "{sim.base_url}"
identifier = "{IDENTIFIER}"
password = "{password}"
api_key = "{API_KEY}"
request_timeout_s = 2.0
reconnect_initial_s = 0.05
[feed]
kind = "ig"
epics = ["{epic}"]
"""
    )
    return str(path)


def _market() -> SimMarket:
    return SimMarket(EURUSD, 1.1000, 1.1001, min_stop_distance=2)


def test_check_shows_account_markets_prices_and_positions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = SimPosition(EURUSD, "BUY", 1.0990, stop=1.0950)
    guaranteed = SimPosition(EURUSD, "SELL", 1.1010, stop=1.1050, guaranteed=True)
    with sim_in_thread(markets=[_market()], positions=[plain, guaranteed]) as sim:
        code = main(["ig", "check", "--config", _config(tmp_path, sim), "--seconds", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "account SIMACC1" in out and "trading 100" in out
    assert f"market {EURUSD}: scale x1, min stop 2.0 pips, TRADEABLE" in out
    assert f"price {EURUSD}: 1 ticks, last 1.1/1.1001" in out
    assert f"would adopt {plain.deal_id}" in out
    assert f"would refuse {guaranteed.deal_id} {EURUSD}: GUARANTEED_STOP_NOT_MANAGED" in out
    assert sim.amendments == []  # it never amends


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("credentials", "IG refused the login: error.security.invalid-details"),
        ("epic", "epic CS.D.NZDUSD.MINI.IP is not available"),
        ("allowance", "exceeded-account-allowance"),
        ("stream", "CONERR 65"),
    ],
)
def test_check_fails_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    with sim_in_thread(markets=[_market()]) as sim:
        if case == "allowance":  # spent by another application on the same account
            sim.fail_next("GET", "markets", 403, "error.public-api.exceeded-account-allowance")
        config = _config(
            tmp_path,
            sim,
            epic="CS.D.NZDUSD.MINI.IP" if case == "epic" else EURUSD,
            password="wrong" if case == "credentials" else PASSWORD,
        )
        if case == "stream":
            Path(config).write_text(
                Path(config).read_text().replace("[feed]", 'tlcp_version = "2.5.0"\n[feed]')
            )
        code = main(["ig", "check", "--config", config, "--seconds", "1"])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("traild: error:")]
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err


def test_check_amend_shows_the_put_and_its_confirmation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    buy = SimPosition(EURUSD, "BUY", 1.0990, stop=1.0950, limit=1.1100)
    with sim_in_thread(markets=[_market()], positions=[buy]) as sim:
        config = _config(tmp_path, sim)
        code = main(["ig", "check", "--config", config, "--seconds", "1", "--amend", buy.deal_id])
        amendments = list(sim.amendments)
        sessions = sim.stream.created
    out = capsys.readouterr().out
    assert code == 0, out
    put = f"amend {buy.deal_id} ({EURUSD}): PUT /positions/otc/{buy.deal_id} v2 "
    assert put in out and "'stopLevel': 1.095, 'limitLevel': 1.11" in out
    assert "-> 200 dealReference SIMREF" in out
    assert f"amend {buy.deal_id}: TRADE stream CONFIRMS: ACCEPTED SUCCESS (AMENDED)" in out
    assert f"amend {buy.deal_id}: GET /confirms: ACCEPTED SUCCESS (AMENDED)" in out
    assert f"amend {buy.deal_id}: stop and limit unchanged at IG: yes" in out
    assert amendments == [
        (
            buy.deal_id,
            {
                "stopLevel": 1.095,
                "limitLevel": 1.11,
                "guaranteedStop": False,
                "trailingStop": False,
            },
        )
    ]
    assert f"price {EURUSD}: DLG_FLAG seen DEAL; stream prices /1" in out
    assert "streaming: 1 session(s)" in out and sessions == 1  # PRICE and TRADE on one


def test_check_without_a_tick_fails_naming_the_market_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = SimMarket(EURUSD, 1.1, 1.1001, state="CLOSED", quoted=False)
    with sim_in_thread(markets=[closed]) as sim:
        code = main(["ig", "check", "--config", _config(tmp_path, sim), "--seconds", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"price {EURUSD}: 0 ticks" in captured.out
    [line] = [ln for ln in captured.err.splitlines() if ln.startswith("traild: error:")]
    assert f"no PRICE tick for {EURUSD} in 1s (market status CLOSED" in line
    assert "dealing states seen: CLOSED" in line


def test_check_reports_a_timestamp_that_is_not_a_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = SimMarket(EURUSD, 1.1, 1.1001, timestamp_text="10:00:01")
    with sim_in_thread(markets=[odd]) as sim:
        code = main(["ig", "check", "--config", _config(tmp_path, sim), "--seconds", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"price {EURUSD}: TIMESTAMP not epoch ms: '10:00:01' (dated by the local clock)" in out
