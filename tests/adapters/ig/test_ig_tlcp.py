"""The sans-IO Lightstreamer protocol: lines, MERGE values, UPDATE_TIME, events, staleness."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traild.adapters.ig.tlcp import (
    FIELDS,
    Connected,
    LineSplitter,
    MarketStreamProtocol,
    MarketUpdate,
    Rebind,
    StaleTracker,
    Subscribed,
    TLCPError,
    apply_update,
    encode_params,
    parse_line,
    update_time_to_utc,
)
from traild.testing.ig_sim.stream import encode_values

EURUSD = "CS.D.EURUSD.MINI.IP"
LONDON = ZoneInfo("Europe/London")


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


def test_update_time_takes_the_date_of_now() -> None:
    now = datetime(2024, 1, 10, 12, 0, 5, tzinfo=UTC)
    assert update_time_to_utc("12:00:03", now, UTC) == datetime(2024, 1, 10, 12, 0, 3, tzinfo=UTC)


def test_update_time_before_midnight_received_after_midnight_is_yesterday() -> None:
    now = datetime(2024, 1, 10, 0, 0, 2, tzinfo=UTC)
    assert update_time_to_utc("23:59:59", now, UTC) == datetime(2024, 1, 9, 23, 59, 59, tzinfo=UTC)


def test_update_time_after_midnight_seen_by_a_slow_clock_is_tomorrow() -> None:
    now = datetime(2024, 1, 9, 23, 59, 58, tzinfo=UTC)
    assert update_time_to_utc("00:00:01", now, UTC) == datetime(2024, 1, 10, 0, 0, 1, tzinfo=UTC)


def test_update_time_is_uk_wall_time_in_british_summer_time() -> None:
    now = datetime(2024, 7, 1, 9, 0, 1, tzinfo=UTC)
    assert update_time_to_utc("10:00:00", now, LONDON) == datetime(2024, 7, 1, 9, 0, tzinfo=UTC)


def test_update_time_in_the_repeated_autumn_hour_picks_the_occurrence_nearest_now() -> None:
    # 2024-10-27 01:30 London happens twice: 00:30 UTC (BST) and 01:30 UTC (GMT).
    early = datetime(2024, 10, 27, 0, 30, 2, tzinfo=UTC)
    late = datetime(2024, 10, 27, 1, 30, 2, tzinfo=UTC)
    assert update_time_to_utc("01:30:00", early, LONDON) == datetime(
        2024, 10, 27, 0, 30, tzinfo=UTC
    )
    assert update_time_to_utc("01:30:00", late, LONDON) == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)


def test_update_time_that_is_not_a_time_is_none() -> None:
    assert update_time_to_utc("soon", datetime(2024, 1, 1, tzinfo=UTC), UTC) is None


def test_protocol_turns_notifications_into_events() -> None:
    protocol = MarketStreamProtocol([EURUSD])
    connected = protocol.handle(parse_line("CONOK,S1a2b,50000,5000,*"))
    assert connected == Connected("S1a2b", 5000, None)
    assert protocol.handle(parse_line("SUBOK,1,1,4")) == Subscribed(EURUSD)
    update = protocol.handle(parse_line("U,1,1,1.1|1.1002|10:00:00|TRADEABLE"))
    assert update == MarketUpdate(EURUSD, 1.1, 1.1002, "10:00:00", "TRADEABLE", True)
    assert protocol.handle(parse_line("LOOP,0")) == Rebind()
    for quiet in ("PROBE", "SYNC,12", "NOOP,x", "SERVNAME,IG", "CONS,unlimited", "EOS,1,1"):
        assert protocol.handle(parse_line(quiet)) is None


def test_control_link_redirects_later_requests() -> None:
    event = MarketStreamProtocol([EURUSD]).handle(parse_line("CONOK,S1,50000,5000,push.ig:443"))
    assert event == Connected("S1", 5000, "push.ig:443")


def test_state_only_update_is_not_a_price_change() -> None:
    protocol = MarketStreamProtocol([EURUSD])
    protocol.handle(parse_line("U,1,1,1.1|1.1002|10:00:00|TRADEABLE"))
    closed = protocol.handle(parse_line("U,1,1,^3|CLOSED"))
    assert closed == MarketUpdate(EURUSD, 1.1, 1.1002, "10:00:00", "CLOSED", False)
    moved = protocol.handle(parse_line("U,1,1,1.1001||10:00:01|"))
    assert isinstance(moved, MarketUpdate) and moved.price_changed and moved.bid == 1.1001


def test_null_or_bad_prices_are_reported_as_missing() -> None:
    protocol = MarketStreamProtocol([EURUSD])
    update = protocol.handle(parse_line("U,1,1,#|nan|10:00:00|OFFLINE"))
    assert isinstance(update, MarketUpdate) and update.bid is None and update.offer is None


def test_new_session_forgets_merged_values() -> None:
    protocol = MarketStreamProtocol([EURUSD])
    protocol.handle(parse_line("U,1,1,1.1|1.1002|10:00:00|TRADEABLE"))
    protocol.new_session()
    with pytest.raises(TLCPError):
        protocol.handle(parse_line("U,1,1,^4"))


@pytest.mark.parametrize(
    "line", ["CONERR,1,User/password check failed", "END,8,limit", "ERROR,2,x"]
)
def test_server_errors_raise(line: str) -> None:
    with pytest.raises(TLCPError, match=line.split(",")[0]):
        MarketStreamProtocol([EURUSD]).handle(parse_line(line))


def test_subscribe_body_asks_for_merge_market_items_with_snapshot() -> None:
    body = MarketStreamProtocol([EURUSD, "CS.D.USDJPY.MINI.IP"]).subscribe_body()
    first, second = body.split("\r\n")
    assert "LS_op=add" in first and "LS_subId=1" in first and "LS_reqId=1" in first
    assert f"LS_group=MARKET%3A{EURUSD}" in first
    assert "LS_schema=" + "%20".join(FIELDS) in first
    assert "LS_mode=MERGE" in first and "LS_snapshot=true" in first
    assert "LS_subId=2" in second and "USDJPY" in second


def test_added_epic_is_requested_once_with_the_next_ids() -> None:
    protocol = MarketStreamProtocol([EURUSD])
    protocol.subscribe_body()
    assert protocol.add("CS.D.USDJPY.MINI.IP") == "2"
    body = protocol.subscribe_body()
    assert "LS_reqId=2" in body and "LS_subId=2" in body and EURUSD not in body
    assert protocol.epic_of_request("2") == "CS.D.USDJPY.MINI.IP"
    assert protocol.epic_of_request("x") is None
    assert protocol.subscribe_body() == ""
    assert protocol.epics() == [EURUSD, "CS.D.USDJPY.MINI.IP"]


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
