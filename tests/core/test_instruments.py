"""Instruments: pip/tick sizes per market, CEEM wire scaling, exact price <-> tick conversion."""

from __future__ import annotations

from decimal import Decimal

import pytest

from traild.core.errors import InstrumentError
from traild.core.instruments import (
    Instrument,
    InstrumentOverride,
    InstrumentTable,
    symbol_of,
    to_centipips,
)


def resolve(epic: str, **overrides: InstrumentOverride) -> Instrument:
    return InstrumentTable(overrides).resolve(epic)


@pytest.mark.parametrize(
    ("epic", "symbol"),
    [
        ("CS.D.GBPUSD.MINI.IP", "GBPUSD"),
        ("CS.D.EURUSD.CEEM.IP", "EURUSD"),
        ("EURUSD", "EURUSD"),
        ("eurusd", "EURUSD"),
        ("CS.D.USDJPY.MINI.IP", "USDJPY"),
        ("CS.D.CFEGOLD.CEE.IP", "CFEGOLD"),
        ("XAUUSD", "XAUUSD"),
    ],
)
def test_symbol_is_taken_from_the_epic(epic: str, symbol: str) -> None:
    assert symbol_of(epic) == symbol


@pytest.mark.parametrize(
    "epic",
    [
        "CS.D.EURUSD.MINI.IP",
        "CS.D.GBPUSD.MINI.IP",
        "AUDUSD",
        "NZDUSD",
        "USDCAD",
        "USDCHF",
        "EURGBP",
        "EURAUD",
        "GBPAUD",
        "EURNZD",
        "AUDNZD",
        "EURCHF",
        "GBPNZD",
        "CS.D.EURGBP.MINI.IP",
    ],
)
def test_non_jpy_pairs_and_crosses_have_a_four_decimal_pip(epic: str) -> None:
    inst = resolve(epic)
    assert (inst.pip_size, inst.tick_size) == (Decimal("0.0001"), Decimal("0.00001"))
    assert inst.ticks_per_pip == 10
    assert inst.broker_scale == 1


@pytest.mark.parametrize("epic", ["CS.D.USDJPY.MINI.IP", "GBPJPY", "EURJPY", "AUDJPY"])
def test_jpy_quoted_pairs_have_a_two_decimal_pip(epic: str) -> None:
    inst = resolve(epic)
    assert (inst.pip_size, inst.tick_size) == (Decimal("0.01"), Decimal("0.001"))
    assert inst.decimals == 3


@pytest.mark.parametrize("epic", ["CS.D.CFEGOLD.CEE.IP", "XAUUSD", "GOLD"])
def test_gold_has_a_ten_cent_pip(epic: str) -> None:
    inst = resolve(epic)
    assert (inst.pip_size, inst.tick_size) == (Decimal("0.1"), Decimal("0.01"))


@pytest.mark.parametrize(
    "epic", ["IX.D.FTSE.DAILY.IP", "CS.D.XXXYYY.MINI.IP", "", "JPYUSD", "USDUSD", "EURUS"]
)
def test_an_epic_without_a_known_instrument_is_an_error_not_a_default(epic: str) -> None:
    with pytest.raises(InstrumentError):
        resolve(epic)


# -- CEEM wire scale ------------------------------------------------------------------------
def test_ceem_epics_scale_prices_by_ten_thousand_on_the_wire() -> None:
    inst = resolve("CS.D.EURUSD.CEEM.IP")
    assert inst.broker_scale == 10000
    assert inst.pip_size == Decimal("0.0001")  # traild prices stay normal
    assert inst.to_broker(1.17831) == 11783.1
    assert inst.from_broker(11783.1) == 1.17831


def test_ceem_round_trip_is_exact_over_many_prices() -> None:
    inst = resolve("CS.D.EURUSD.CEEM.IP")
    for ticks in range(117_000, 119_000, 7):
        price = inst.to_price(ticks)
        assert inst.from_broker(inst.to_broker(price)) == price
        assert inst.to_ticks(inst.from_broker(inst.to_broker(price))) == ticks


def test_mini_epics_are_not_scaled() -> None:
    inst = resolve("CS.D.EURUSD.MINI.IP")
    assert inst.to_broker(1.17831) == 1.17831 and inst.from_broker(1.17831) == 1.17831


# -- exact conversions ------------------------------------------------------------------------
@pytest.mark.parametrize("epic", ["EURUSD", "USDJPY", "XAUUSD"])
def test_float_string_and_decimal_prices_give_the_same_ticks(epic: str) -> None:
    inst = resolve(epic)
    for ticks in range(1_100_000, 1_100_000 + 3000, 3):
        text = str(inst.to_decimal(ticks))
        assert inst.to_ticks(float(text)) == ticks
        assert inst.to_ticks(text) == ticks
        assert inst.to_ticks(Decimal(text)) == ticks
        assert inst.to_price(ticks) == float(text)


def test_ten_pips_on_eurusd_is_exactly_one_hundred_ticks_despite_binary_floats() -> None:
    inst = resolve("EURUSD")
    assert 1.10100 - 1.10000 < 0.001  # the float difference is 9.9999...e-4
    assert inst.to_ticks(1.10100) - inst.to_ticks(1.10000) == 100


def test_fractional_pips_round_half_up_to_centipips() -> None:
    assert to_centipips(1.5) == 150
    assert to_centipips(0.005) == 1
    assert to_centipips("2.345") == 235
    assert to_centipips(Decimal("10")) == 1000


def test_centipips_to_ticks_rounds_as_asked() -> None:
    inst = resolve("EURUSD")  # 10 ticks per pip
    assert inst.centipips_to_ticks_ceil(155) == 16
    assert inst.centipips_to_ticks_floor(155) == 15
    assert inst.centipips_to_ticks_ceil(150) == inst.centipips_to_ticks_floor(150) == 15


def test_an_instrument_whose_pip_is_not_whole_ticks_is_rejected() -> None:
    with pytest.raises(InstrumentError):
        Instrument("ODD", Decimal("0.0001"), Decimal("0.00003"))
    with pytest.raises(InstrumentError):
        Instrument("ZERO", Decimal("0"), Decimal("0.00001"))


# -- config overrides ---------------------------------------------------------------------------
def test_epic_override_replaces_min_distance_of_that_epic_only() -> None:
    table = InstrumentTable(
        {"CS.D.EURUSD.MINI.IP": InstrumentOverride(min_stop_distance_pips=Decimal("2"))}
    )
    assert table.resolve("CS.D.EURUSD.MINI.IP").min_stop_distance_pips == Decimal(2)
    assert table.resolve("CS.D.EURUSD.CEEM.IP").min_stop_distance_pips == Decimal(0)


def test_symbol_override_applies_to_every_epic_of_the_symbol() -> None:
    table = InstrumentTable({"eurusd": InstrumentOverride(min_stop_distance_pips=Decimal("1.5"))})
    for epic in ("CS.D.EURUSD.MINI.IP", "CS.D.EURUSD.CEEM.IP", "EURUSD"):
        assert table.resolve(epic).min_stop_distance_pips == Decimal("1.5")
    assert table.resolve("CS.D.EURUSD.CEEM.IP").broker_scale == 10000  # built-in kept


def test_override_can_change_scale_and_sizes() -> None:
    inst = resolve(
        "CS.D.CFEGOLD.CEE.IP",
        **{"CS.D.CFEGOLD.CEE.IP": InstrumentOverride(pip_size=Decimal("1"), broker_scale=100)},
    )
    assert (inst.pip_size, inst.tick_size, inst.broker_scale) == (
        Decimal("1"),
        Decimal("0.01"),
        100,
    )
    assert inst.to_broker(2034.56) == 203456.0


def test_config_can_add_an_instrument_unknown_to_the_built_in_table() -> None:
    override = InstrumentOverride(pip_size=Decimal("1"), tick_size=Decimal("0.1"))
    inst = resolve("IX.D.FTSE.DAILY.IP", **{"IX.D.FTSE.DAILY.IP": override})
    assert (inst.pip_size, inst.tick_size, inst.ticks_per_pip) == (Decimal(1), Decimal("0.1"), 10)


def test_adding_an_unknown_instrument_needs_both_pip_and_tick_size() -> None:
    override = InstrumentOverride(pip_size=Decimal("1"))
    with pytest.raises(InstrumentError):
        resolve("IX.D.FTSE.DAILY.IP", **{"IX.D.FTSE.DAILY.IP": override})
