"""The sans-IO Lightstreamer protocol: lines, MERGE values, UPDATE_TIME, events, staleness."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traild.adapters.ig.prices import (
    AMENDABLE_STATES,
    DEALING_STATES,
    PRICE_ADAPTER,
    PRICE_FIELDS,
    StaleTracker,
    price_of,
)
from traild.adapters.ig.tlcp import (
    TRADE_FIELDS,
    Connected,
    ItemUpdate,
    LineSplitter,
    Rebind,
    StreamProtocol,
    Subscribed,
    Subscription,
    TLCPError,
    TLCPRefused,
    TLCPUnsupported,
    apply_update,
    encode_params,
    parse_line,
)
from traild.testing.ig_sim.stream import encode_values

EURUSD = "CS.D.EURUSD.MINI.IP"


def test_parse_line_keeps_the_raw_value_list_of_an_update_in_one_argument() -> None:
    note = parse_line("U,1,1,1.1|1.2|10:00:00|TRADEABLE")
    assert note.tag == "U"
    assert note.args == ("1", "1", "1.1|1.2|10:00:00|TRADEABLE")


def test_parse_line_keeps_commas_inside_an_error_message() -> None:
    note = parse_line("CONERR,1,User/password check failed, try again")
    assert note.args == ("1", "User/password check failed, try again")
    assert parse_line("PROBE").args == ()


def test_first_update_sets_every_field() -> None:
    assert apply_update(None, "1.1|1.2|10:00:00|TRADEABLE", 4) == (
        "1.1",
        "1.2",
        "10:00:00",
        "TRADEABLE",
    )


def test_empty_token_keeps_the_previous_value_of_that_field() -> None:
    before = ("1.1", "1.2", "10:00:00", "TRADEABLE")
    assert apply_update(before, "1.3||10:00:01|", 4) == ("1.3", "1.2", "10:00:01", "TRADEABLE")


def test_caret_run_leaves_several_fields_unchanged() -> None:
    before = ("1.1", "1.2", "10:00:00", "TRADEABLE")
    assert apply_update(before, "^3|CLOSED", 4) == ("1.1", "1.2", "10:00:00", "CLOSED")
    assert apply_update(before, "1.0|^3", 4) == ("1.0", "1.2", "10:00:00", "TRADEABLE")


def test_hash_is_null_and_dollar_is_the_empty_string() -> None:
    before = ("1.1", "1.2", "10:00:00", "TRADEABLE")
    assert apply_update(before, "#|$|^2", 4) == (None, "", "10:00:00", "TRADEABLE")


def test_new_values_are_percent_decoded() -> None:
    assert apply_update(None, "a%7Cb|%23|%24x|caf%C3%A9", 4) == ("a|b", "#", "$x", "café")


@pytest.mark.parametrize(
    ("previous", "raw"),
    [
        (None, "1.1||10:00:00|TRADEABLE"),  # unchanged field on the first update
        (None, "^4"),
        (("1", "2", "3", "4"), "1|2|3|4|5"),  # too many values
        (("1", "2", "3", "4"), "1|2"),  # too few
        (("1", "2", "3", "4"), "^5"),  # run past the schema
        (("1", "2", "3", "4"), "^Tabc|^3"),  # a diff format traild never accepts
    ],
)
def test_malformed_value_lists_are_protocol_errors(
    previous: tuple[str, ...] | None, raw: str
) -> None:
    with pytest.raises(TLCPError):
        apply_update(previous, raw, 4)


values = st.lists(st.one_of(st.none(), st.text(max_size=6)), min_size=4, max_size=4)


@given(previous=values, current=values)
def test_sim_encoding_round_trips_through_the_decoder(
    previous: list[str | None], current: list[str | None]
) -> None:
    assert apply_update(None, encode_values(None, previous), 4) == tuple(previous)
    encoded = encode_values(previous, current)
    assert apply_update(tuple(previous), encoded, 4) == tuple(current)


ITEM = f"PRICE:ACC1:{EURUSD}"


def _price_protocol(*epics: str) -> StreamProtocol:
    return StreamProtocol(
        Subscription(e, f"PRICE:ACC1:{e}", PRICE_FIELDS, "MERGE", PRICE_ADAPTER) for e in epics
    )


def test_protocol_turns_notifications_into_events() -> None:
    protocol = _price_protocol(EURUSD)
    connected = protocol.handle(parse_line("CONOK,S1a2b,50000,5000,*"))
    assert connected == Connected("S1a2b", 5000, None)
    assert protocol.handle(parse_line("SUBOK,1,1,4")) == Subscribed(EURUSD)
    update = protocol.handle(parse_line("U,1,1,1.1|1.1002|1714644000000|DEAL"))
    assert isinstance(update, ItemUpdate) and update.before is None
    assert update.values["BIDPRICE1"] == "1.1" and update.values["DLG_FLAG"] == "DEAL"
    assert protocol.handle(parse_line("LOOP,0")) == Rebind()
    for quiet in ("PROBE", "SYNC,12", "NOOP,x", "SERVNAME,IG", "CONS,unlimited", "EOS,1,1"):
        assert protocol.handle(parse_line(quiet)) is None


def test_price_update_reads_bid_ask_epoch_millis_and_strips_the_padded_dealing_flag() -> None:
    protocol = _price_protocol(EURUSD)
    update = protocol.handle(parse_line("U,1,1,1.1|1.1002|1714644000250|DEAL%20%20%20%20"))
    assert isinstance(update, ItemUpdate)
    price = price_of(update)
    assert (price.bid, price.offer, price.state) == (1.1, 1.1002, "DEAL")
    assert price.ts == datetime(2024, 5, 2, 10, 0, 0, 250000, tzinfo=UTC)
    assert price.price_changed


def test_control_link_redirects_later_requests() -> None:
    event = _price_protocol(EURUSD).handle(parse_line("CONOK,S1,50000,5000,push.ig:443"))
    assert event == Connected("S1", 5000, "push.ig:443")


def test_state_only_update_is_not_a_price_change() -> None:
    protocol = _price_protocol(EURUSD)
    protocol.handle(parse_line("U,1,1,1.1|1.1002|1714644000000|DEAL"))
    closed = protocol.handle(parse_line("U,1,1,^3|CLOSED"))
    assert isinstance(closed, ItemUpdate)
    assert price_of(closed).state == "CLOSED" and not price_of(closed).price_changed
    moved = protocol.handle(parse_line("U,1,1,1.1001||1714644001000|"))
    assert isinstance(moved, ItemUpdate)
    assert price_of(moved).price_changed and price_of(moved).bid == 1.1001


def test_null_or_bad_prices_are_reported_as_missing() -> None:
    protocol = _price_protocol(EURUSD)
    update = protocol.handle(parse_line("U,1,1,#|nan|x|SUSPEND"))
    assert isinstance(update, ItemUpdate)
    price = price_of(update)
    assert price.bid is None and price.offer is None and price.ts is None


def test_every_dealing_state_is_mapped_and_only_deal_edit_closingsonly_are_amendable() -> None:
    documented = {"CLOSED", "CALL", "DEAL", "EDIT", "CLOSINGSONLY", "DEALNOEDIT", "AUCTION"}
    assert documented | {"AUCTIONNOEDIT", "SUSPEND"} == set(DEALING_STATES)
    assert {"DEAL", "EDIT", "CLOSINGSONLY"} == AMENDABLE_STATES


def test_new_session_forgets_merged_values() -> None:
    protocol = _price_protocol(EURUSD)
    protocol.handle(parse_line("U,1,1,1.1|1.1002|1714644000000|DEAL"))
    protocol.new_session()
    with pytest.raises(TLCPError):
        protocol.handle(parse_line("U,1,1,^4"))


@pytest.mark.parametrize("line", ["END,8,limit", "ERROR,2,x"])
def test_server_errors_raise(line: str) -> None:
    with pytest.raises(TLCPError, match=line.split(",")[0]):
        _price_protocol(EURUSD).handle(parse_line(line))


def test_conerr_is_classified_by_code() -> None:
    protocol = _price_protocol(EURUSD)
    with pytest.raises(TLCPUnsupported) as version:
        protocol.handle(parse_line("CONERR,65,Unsupported protocol version"))
    assert version.value.code == 65 and not version.value.needs_login
    with pytest.raises(TLCPRefused) as auth:
        protocol.handle(parse_line("CONERR,1,User/password check failed"))
    assert auth.value.needs_login and not isinstance(auth.value, TLCPUnsupported)
    with pytest.raises(TLCPRefused) as busy:
        protocol.handle(parse_line("CONERR,8,Configured max number of sessions reached"))
    assert not busy.value.needs_login


def test_subscribe_body_asks_for_price_items_of_the_pricing_adapter_with_snapshot() -> None:
    body = _price_protocol(EURUSD, "CS.D.USDJPY.MINI.IP").subscribe_body()
    first, second = body.split("\r\n")
    assert "LS_op=add" in first and "LS_subId=1" in first and "LS_reqId=1" in first
    assert f"LS_group=PRICE%3AACC1%3A{EURUSD}" in first
    assert "LS_schema=" + "%20".join(PRICE_FIELDS) in first
    assert "LS_mode=MERGE" in first and "LS_snapshot=true" in first
    assert "LS_data_adapter=Pricing" in first
    assert "LS_subId=2" in second and "USDJPY" in second
    assert "MARKET" not in body


def test_added_subscription_is_requested_once_with_the_next_ids() -> None:
    protocol = _price_protocol(EURUSD)
    protocol.subscribe_body()
    trade = Subscription("TRADE", "TRADE:ACC1", TRADE_FIELDS, "DISTINCT")
    assert protocol.add(trade) == "2"
    body = protocol.subscribe_body()
    assert "LS_reqId=2" in body and "LS_subId=2" in body and EURUSD not in body
    assert "LS_mode=DISTINCT" in body and "LS_data_adapter" not in body
    assert protocol.key_of_request("2") == "TRADE"
    assert protocol.key_of_request("x") is None
    assert protocol.subscribe_body() == ""
    assert protocol.keys() == [EURUSD, "TRADE"]


def test_encode_params_percent_encodes_reserved_characters() -> None:
    assert encode_params({"LS_password": "CST-a+b|XST-c&d=e%"}) == (
        "LS_password=CST-a%2Bb%7CXST-c%26d%3De%25"
    )


def test_line_splitter_joins_lines_split_across_chunks() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"CONOK,S1,5") == []
    assert splitter.feed(b"0000,5000,*\r\nPRO") == ["CONOK,S1,50000,5000,*"]
    assert splitter.feed(b"BE\r\n\r\nU,1,1,caf\xc3") == ["PROBE"]
    assert splitter.feed(b"\xa9|^3\r\n") == ["U,1,1,café|^3"]


def test_stale_tracker_reports_an_epic_once_until_it_resumes() -> None:
    tracker = StaleTracker([EURUSD, "B"], stale_after=5.0, now=0.0)
    assert tracker.check(4.9) == []
    tracker.touch("B", 4.0)
    assert tracker.check(5.0) == [(EURUSD, 5.0)]
    assert tracker.check(6.0) == []
    assert tracker.stale() == {EURUSD}
    assert tracker.touch(EURUSD, 7.0) is True
    assert tracker.touch(EURUSD, 7.5) is False
    assert tracker.check(9.5) == [("B", 5.5)]
