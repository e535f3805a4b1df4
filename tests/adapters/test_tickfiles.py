"""Tick files: formats, exact values, and malformed input named by file and line."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traild.adapters.tickfiles import (
    TickColumns,
    epic_from_filename,
    guard_columns,
    iter_ticks,
    load_ticks,
    ms_to_datetime,
)
from traild.core.conditions import GuardParams, TickGuard
from traild.core.errors import DataError

OANDA = "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"


def _write(path: Path, text: str, gz: bool = False) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _iso(columns: TickColumns, i: int) -> str:
    return ms_to_datetime(int(columns.ts_ms[i])).isoformat(timespec="milliseconds")


def test_oanda_file_loads_every_row_as_columns(shared_data_dir: Path) -> None:
    cols = load_ticks(shared_data_dir / "ticks" / OANDA)
    assert len(cols) == 532_903
    assert cols.ts.dtype == np.dtype("datetime64[ms]")
    assert cols.bid.dtype == cols.ask.dtype == np.float64
    assert _iso(cols, 0) == "2014-05-01T00:00:00.292+00:00"
    assert (cols.bid[0], cols.ask[0]) == (1.38676, 1.38686)
    assert _iso(cols, -1) == "2014-05-15T23:59:56.324+00:00"
    assert (cols.bid[-1], cols.ask[-1]) == (1.37164, 1.37175)


def test_every_shared_tick_file_matches_its_published_statistics(shared_data_dir: Path) -> None:
    stats = json.loads((shared_data_dir / "stats.json").read_text())
    files = sorted((shared_data_dir / "ticks").glob("*.csv.gz"))
    assert files
    for path in files:
        expected = stats[path.name.removesuffix(".csv.gz")]
        cols = load_ticks(path)
        assert len(cols) == expected["rows"], path.name
        first = ms_to_datetime(int(cols.ts_ms[0])).isoformat(timespec="milliseconds")
        last = ms_to_datetime(int(cols.ts_ms[-1])).isoformat(timespec="milliseconds")
        assert first.replace("+00:00", "Z") == expected["first"], path.name
        assert last.replace("+00:00", "Z") == expected["last"], path.name


def test_prices_are_exactly_the_floats_of_the_decimal_text(shared_data_dir: Path) -> None:
    path = shared_data_dir / "ticks" / "GBPJPY_dukascopy_ticks_2012-12-02_2012-12-14.csv.gz"
    cols = load_ticks(path)
    with gzip.open(path, "rt") as fh:
        rows = list(islice(csv.reader(fh), 1, 5001))
    for i, (ts, bid, ask) in enumerate(rows):
        assert cols.bid[i] == float(bid) and cols.ask[i] == float(ask)
        assert ms_to_datetime(int(cols.ts_ms[i])) == datetime.fromisoformat(ts)


def test_iter_ticks_yields_aware_utc_ticks_of_the_epic(shared_data_dir: Path) -> None:
    path = shared_data_dir / "ticks" / "USDJPY_truefx_ticks_2013-01-01_35min.csv.gz"
    cols = load_ticks(path)
    ticks = list(iter_ticks(cols, "CS.D.USDJPY.MINI.IP"))
    assert len(ticks) == 1000
    assert ticks[0].epic == "CS.D.USDJPY.MINI.IP"
    assert ticks[0].ts == datetime(2013, 1, 1, 22, 0, 0, 295000, tzinfo=UTC)
    assert (ticks[0].bid, ticks[0].ask) == (86.655, 86.728)
    window = [(t.epic, t.ts, t.bid, t.ask) for t in cols.ticks("X", 10, 12)]
    assert window == [("X", t.ts, t.bid, t.ask) for t in ticks[10:12]]


def test_offsets_and_naive_times_are_converted_to_utc(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.csv",
        "ts_utc,bid,ask\n"
        "2014-05-01T01:00:00.250+01:00,1.1,1.2\n"
        "2014-05-01T00:00:01,1.1,1.2\n"
        "2014-05-01 00:00:02.5Z,1.1,1.2\n",
    )
    cols = load_ticks(path)
    assert [_iso(cols, i) for i in range(3)] == [
        "2014-05-01T00:00:00.250+00:00",
        "2014-05-01T00:00:01.000+00:00",
        "2014-05-01T00:00:02.500+00:00",
    ]


def test_histdata_ticks_without_header_are_shifted_from_est_to_utc(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "DAT_ASCII_EURUSD_T_201701.csv",
        "20170102 170001285,1.05155,1.05196,0\n20170102 235959999,1.05150,1.05190,0\n",
    )
    cols = load_ticks(path)
    assert _iso(cols, 0) == "2017-01-02T22:00:01.285+00:00"
    assert _iso(cols, 1) == "2017-01-03T04:59:59.999+00:00"
    assert list(cols.bid) == [1.05155, 1.05150]


def test_dukascopy_export_with_ask_before_bid_and_crlf_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "EURUSD_Ticks.csv",
        "Gmt time,Ask,Bid,AskVolume,BidVolume\r\n"
        "01.01.2019 23:00:00.078,1.14643,1.14605,1.5,2.25\r\n"
        "02.01.2019 01:00:00.100,1.14700,1.14690,1,1\r\n",
    )
    cols = load_ticks(path)
    assert _iso(cols, 0) == "2019-01-01T23:00:00.078+00:00"
    assert _iso(cols, 1) == "2019-01-02T01:00:00.100+00:00"
    assert list(cols.bid) == [1.14605, 1.14690]
    assert list(cols.ask) == [1.14643, 1.14700]


def test_epoch_millisecond_exports_are_read_by_column_name(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "eurusd.csv",
        "timestamp,askPrice,bidPrice,askVolume,bidVolume\n1546383600078,1.14643,1.14605,1,2\n",
        gz=True,
    )
    cols = load_ticks(path)
    assert _iso(cols, 0) == "2019-01-01T23:00:00.078+00:00"
    assert (cols.bid[0], cols.ask[0]) == (1.14605, 1.14643)


def test_bad_prices_are_passed_through_for_the_tick_guard(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "t.csv",
        "ts_utc,bid,ask\n2014-05-01T00:00:00Z,nan,1.2\n2014-05-01T00:00:01Z,0,-1\n"
        "2014-05-01T00:00:02Z,1.3,1.2\n2014-05-01T00:00:01Z,inf,1.2\n",
    )
    cols = load_ticks(path)
    assert len(cols) == 4
    assert math.isnan(cols.bid[0]) and cols.bid[1] == 0 and cols.ask[1] == -1
    assert cols.bid[2] > cols.ask[2]  # crossed stays crossed
    assert cols.ts_ms[3] < cols.ts_ms[2]  # out of order stays out of order
    assert math.isinf(cols.bid[3])


def test_gzip_is_detected_by_content_not_by_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain-name.csv", "ts_utc,bid,ask\n2014-05-01T00:00:00Z,1,2\n", True)
    assert len(load_ticks(path)) == 1


def test_header_only_file_gives_empty_columns(tmp_path: Path) -> None:
    cols = load_ticks(_write(tmp_path / "t.csv", "ts_utc,bid,ask\n"))
    assert len(cols) == 0 and cols.ts.dtype == np.dtype("datetime64[ms]")
    assert list(iter_ticks(cols, "EURUSD")) == []


@pytest.mark.parametrize(
    ("body", "line", "problem", "text"),
    [
        (
            "2014-05-01T00:00:00Z,1.1,1.2\n2014-05-01T00:00:01Z,1.1\n",
            3,
            "expected 3 fields",
            ",1.1'",
        ),
        ("2014-05-01T00:00:00Z,1.1,1.2,9\n", 2, "expected 3 fields, found 4", "1.2,9'"),
        ("2014-05-01T00:00:00Z,1.1,1.2\n2014-05-01T00:00:01Z,1.1,abc\n", 3, "the ask", "abc'"),
        ("2014-05-01T00:00:00Z,x,1.2\n", 2, "the bid", ",x,"),
        ("2014-05-01T00:00:00Z,1.1,1.2\nnow,1.1,1.2\n", 3, "the timestamp", "'now,"),
        ("2014-05-01T00:00:00Z,1.1,1.2\n2014-13-01T00:00:00Z,1,2\n", 3, "timestamp", "-13-"),
        ("2014-05-01T00:00:00Z,1.1,1.2\n\n2014-05-01T00:00:01Z,1,2\n", 3, "found 1", "''"),
        ("yesterday,1.1,1.2\n", 2, "unrecognised timestamp", "yesterday"),
    ],
)
def test_malformed_row_names_file_line_and_text(
    tmp_path: Path, body: str, line: int, problem: str, text: str
) -> None:
    path = _write(tmp_path / "EURUSD_bad.csv.gz", "ts_utc,bid,ask\n" + body, gz=True)
    with pytest.raises(DataError) as info:
        load_ticks(path)
    message = str(info.value)
    assert message.startswith(f"EURUSD_bad.csv.gz:{line}: ")
    assert problem in message and text in message
    assert "\n" not in message


def test_row_pass_reports_a_row_that_shifts_columns(tmp_path: Path) -> None:
    body = "ts_utc,bid,ask\n2014-05-01T00:00:00Z,1.1\n2014-05-01T00:00:01Z,1.1,1.2,1.3\n"
    with pytest.raises(DataError, match=r"t\.csv:2: expected 3 fields, found 2"):
        load_ticks(_write(tmp_path / "t.csv", body))


def test_unrecognised_header_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"t\.csv:1: unrecognised header.*'time,price'"):
        load_ticks(_write(tmp_path / "t.csv", "time,price\n1,2\n"))


def test_missing_empty_and_corrupt_files_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read tick file"):
        load_ticks(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="empty tick file"):
        load_ticks(_write(tmp_path / "empty.csv", ""))
    truncated = gzip.compress(b"ts_utc,bid,ask\n" * 100)[:30]
    (tmp_path / "cut.csv.gz").write_bytes(truncated)
    with pytest.raises(DataError, match="corrupt gzip"):
        load_ticks(tmp_path / "cut.csv.gz")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="cannot read"):
        load_ticks(tmp_path / "dir.csv")


def test_non_utf8_bytes_are_reported_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"ts_utc,bid,ask\n2014-05-01T00:00:00Z,1.1,1.2\n2014-05-01T00:\xff0:01Z,1,2\n")
    with pytest.raises(DataError, match=r"t\.csv:3: cannot parse the timestamp"):
        load_ticks(path)


@pytest.mark.parametrize(
    ("name", "epic"),
    [
        ("GBPJPY_dukascopy_ticks_2012-12-02_2012-12-14.csv.gz", "GBPJPY"),
        ("eurusd-2014.csv", "EURUSD"),
        ("USDJPY.csv.gz", "USDJPY"),
        ("XAUUSD_ticks.csv", "XAUUSD"),
    ],
)
def test_epic_comes_from_the_pair_that_starts_the_file_name(name: str, epic: str) -> None:
    assert epic_from_filename(Path("/data") / name) == epic


@pytest.mark.parametrize("name", ["ticks.csv", "EURUS_x.csv", "EURUSDX.csv", "ABCDEF_x.csv"])
def test_file_name_without_a_pair_is_a_data_error(name: str) -> None:
    with pytest.raises(DataError, match="give the epic explicitly"):
        epic_from_filename(name)


def test_columns_round_trip_through_iter_ticks(tmp_path: Path) -> None:
    buf = io.StringIO()
    buf.write("ts_utc,bid,ask\n")
    for i in range(50):
        buf.write(f"2020-02-29T23:59:{i:02d}.{i:03d}Z,{1 + i / 1e5:.5f},{1.0001 + i / 1e5:.5f}\n")
    cols = load_ticks(_write(tmp_path / "t.csv", buf.getvalue()))
    ticks = list(cols.ticks("EURUSD"))
    assert ticks[7].ts == datetime(2020, 2, 29, 23, 59, 7, 7000, tzinfo=UTC)
    assert ticks[7].bid == float(f"{1 + 7 / 1e5:.5f}")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 250, 5000, -3, 400_000_000]),  # ms steps, a few bad
            st.sampled_from([0.0, 0.0001, -0.0002, 0.0039, 0.0041, 0.06, math.nan]),
            st.sampled_from([0.0001, 0.0002, 0.0]),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_guard_columns_accepts_exactly_what_the_tick_guard_accepts(
    rows: list[tuple[int, float, float]],
) -> None:
    ms, bid, ask, t, price = [], [], [], 1_546_300_800_000, 1.1
    for step, move, spread in rows:
        t, price = t + step, price + move
        ms.append(t)
        bid.append(price)
        ask.append(price + spread)
    cols = TickColumns(
        np.array(ms, dtype=np.int64).view("datetime64[ms]"),
        np.array(bid, dtype=np.float64),
        np.array(ask, dtype=np.float64),
    )
    params = GuardParams.for_pip(0.0001)
    guard = TickGuard(params)
    keep, reasons = guard_columns(cols, guard)
    one_by_one = TickGuard(params)
    assert keep.tolist() == [
        one_by_one.check_ms(m, b, a) is None for m, b, a in zip(ms, bid, ask, strict=True)
    ]
    assert reasons == one_by_one.by_reason
    if not keep.all():  # (a file the guard accepts whole is not walked: no state to compare)
        assert _state(guard) == _state(one_by_one)


def _state(guard: TickGuard) -> tuple[object, ...]:
    return tuple(getattr(guard, name) for name in TickGuard.__slots__)


@pytest.mark.parametrize("seed", range(6))
def test_guard_columns_leaves_the_guard_as_feeding_every_tick_would(seed: int) -> None:
    """Long clean stretches go to the guard at once (issue 24): the same rows, reasons and
    state (moving average, anchor, counts) as checking each tick, around every kind of bad
    tick: a duplicate, a spike, a run that re-anchors, a gap, one out of order, NaN, zero."""
    rng = np.random.default_rng(seed)
    n = 3000
    ms = 1_546_300_800_000 + np.cumsum(rng.integers(0, 2000, n))
    bid = 1.1 + np.cumsum(rng.normal(0, 0.00005, n))
    ask = bid + rng.choice([0.00008, 0.0001, -0.00001], n)  # a few crossed
    for at in rng.choice(np.arange(1, n - 10), 12, replace=False).tolist():
        kind = rng.integers(0, 7)
        if kind == 0:
            ms[at], bid[at], ask[at] = ms[at - 1], bid[at - 1], ask[at - 1]  # duplicate
        elif kind == 1:
            bid[at] += 0.01  # one spike
        elif kind == 2:
            bid[at : at + 6] += 0.01  # a level shift: rejected, then re-anchored
            ask[at : at + 6] += 0.01
        elif kind == 3:
            ms[at:] += 100 * 3_600_000  # beyond max_gap
        elif kind == 4:
            ms[at] = ms[at - 1] - 5  # out of order
        elif kind == 5:
            bid[at] = math.nan
        else:
            ask[at] = 0.0
    cols = TickColumns(ms.view("datetime64[ms]"), bid, ask)
    params = GuardParams.for_pip(0.0001)
    guard, one_by_one = TickGuard(params), TickGuard(params)
    keep, reasons = guard_columns(cols, guard)
    expected = [
        one_by_one.check_ms(m, b, a) is None
        for m, b, a in zip(ms.tolist(), bid.tolist(), ask.tolist(), strict=True)
    ]
    assert keep.tolist() == expected and not all(expected)
    assert reasons == one_by_one.by_reason
    assert _state(guard) == _state(one_by_one)
