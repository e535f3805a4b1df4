"""Logging: one JSON object per line, journald priorities, text on a TTY, no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from traild.core.messages import Direction
from traild.log import capture_events, journal_stream_matches, reset_logging, setup_logging


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    yield
    reset_logging()


@pytest.fixture
def stderr_file(tmp_path: Path) -> Iterator[io.TextIOWrapper]:
    """A stand-in for stderr: a real file (a device and an inode, like a journal stream)."""
    with open(tmp_path / "stderr", "w+", encoding="utf-8") as fh:
        yield fh


def lines_of(fh: io.TextIOWrapper) -> list[str]:
    fh.flush()
    fh.seek(0)
    return fh.read().splitlines()


def strict_json(line: str) -> dict[str, Any]:
    def no_constants(name: str) -> None:
        raise AssertionError(f"not JSON: {name}")

    parsed: dict[str, Any] = json.loads(line, parse_constant=no_constants)
    return parsed


def test_json_lines_carry_ts_level_event_message_and_flat_fields(
    stderr_file: io.TextIOWrapper,
) -> None:
    setup_logging(json=True, stream=stderr_file)
    logger.bind(event="stop.confirmed", trade_id=7, deal_id="D1", level=1.0995).info(
        "stop confirmed"
    )
    [line] = lines_of(stderr_file)
    record = strict_json(line)
    assert record["event"] == "stop.confirmed"
    assert record["level"] == "INFO"
    assert record["message"] == "stop confirmed"
    assert (record["trade_id"], record["deal_id"]) == (7, "D1")
    assert record["extra_level"] == 1.0995  # a field named like a core key keeps its value
    assert record["ts"].endswith("Z")
    assert datetime.fromisoformat(record["ts"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert list(record)[:4] == ["ts", "level", "event", "message"]


def test_every_record_is_one_line_even_with_newlines_and_tracebacks(
    stderr_file: io.TextIOWrapper,
) -> None:
    setup_logging(json=True, stream=stderr_file)
    logger.bind(event="a").warning("two\nlines")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.bind(event="actor.crashed").exception("crashed")
    lines = lines_of(stderr_file)
    assert len(lines) == 2
    crashed = strict_json(lines[1])
    assert crashed["level"] == "ERROR" and "RuntimeError: boom" in crashed["exception"]


def test_values_json_cannot_carry_are_converted(stderr_file: io.TextIOWrapper) -> None:
    setup_logging(json=True, stream=stderr_file)
    logger.bind(
        event="tick.rejected",
        bid=float("nan"),
        ask=float("inf"),
        when=datetime(2024, 1, 1, 12, 0),
        price=Decimal("1.10005"),
        direction=Direction.BUY,
        path=Path("/x"),
    ).warning("tick rejected")
    record = strict_json(lines_of(stderr_file)[0])
    assert (record["bid"], record["ask"]) == ("nan", "inf")
    assert record["when"] == "2024-01-01T12:00:00"
    assert (record["price"], record["direction"], record["path"]) == ("1.10005", "BUY", "/x")


def test_records_without_an_event_get_a_default_one() -> None:
    with capture_events() as events:
        logger.info("plain")
    assert events[0]["event"] == "log"


def test_secrets_are_redacted_in_fields_nested_values_and_messages() -> None:
    with capture_events() as events:
        logger.bind(
            event="broker.login",
            password="hunter2",
            ig_api_key="K-123",
            cst="C-1",
            headers={"X-SECURITY-TOKEN": "T-1", "Accept": "application/json"},
            tokens_used=3,
        ).info("login password=hunter2 api_key: K-123 CST=C-1 ok")
    record = events[0]
    flat = json.dumps(record)
    for secret in ("hunter2", "K-123", "C-1", "T-1"):
        assert secret not in flat
    assert record["password"] == record["ig_api_key"] == record["cst"] == "***"
    assert record["headers"] == {"X-SECURITY-TOKEN": "***", "Accept": "application/json"}
    assert record["tokens_used"] == 3
    assert record["message"] == "login password=*** api_key: *** CST=*** ok"


def test_tracebacks_do_not_show_local_variable_values(stderr_file: io.TextIOWrapper) -> None:
    setup_logging(json=True, stream=stderr_file)

    def login(secret_value: str) -> None:
        raise ValueError("refused")

    secret = "-".join(["s3cr3t", "value"])  # only a variable's value could reveal it
    try:
        login(secret)
    except ValueError:
        logger.bind(event="broker.error").exception("login failed")
    text = "\n".join(lines_of(stderr_file))
    assert "ValueError: refused" in text
    assert "s3cr3t-value" not in text


def test_journal_stream_lines_start_with_the_syslog_priority(
    stderr_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = os.fstat(stderr_file.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert journal_stream_matches(stderr_file)
    setup_logging(json=True, level="DEBUG", stream=stderr_file)
    logger.bind(event="a").debug("d")
    logger.bind(event="b").info("i")
    logger.bind(event="c").warning("w")
    logger.bind(event="d").error("e")
    prefixes = [line[: line.index("{")] for line in lines_of(stderr_file)]
    assert prefixes == ["<7>", "<6>", "<4>", "<3>"]


def test_no_priority_prefix_when_journal_stream_is_another_file(
    stderr_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert not journal_stream_matches(stderr_file)
    setup_logging(json=True, stream=stderr_file)
    logger.bind(event="a").info("i")
    assert lines_of(stderr_file)[0].startswith("{")


def test_human_text_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)  # set in the test: pytest swaps it per phase
    setup_logging()
    logger.bind(event="trade.adopted", deal_id="D9", password="x").info("trade adopted")
    out = tty.getvalue()
    assert "trade.adopted" in out and "trade adopted" in out and "deal_id=D9" in out
    assert "password=***" in out
    assert not out.lstrip().startswith("{")


def test_json_when_stderr_is_not_a_terminal(stderr_file: io.TextIOWrapper) -> None:
    setup_logging(stream=stderr_file)
    logger.bind(event="daemon.ready").info("ready")
    assert strict_json(lines_of(stderr_file)[0])["event"] == "daemon.ready"


def test_level_filters_records(stderr_file: io.TextIOWrapper) -> None:
    setup_logging(json=True, level="WARNING", stream=stderr_file)
    logger.bind(event="a").info("hidden")
    logger.bind(event="b").warning("shown")
    assert [strict_json(x)["event"] for x in lines_of(stderr_file)] == ["b"]


def test_stdlib_logging_is_routed_and_noisy_libraries_are_quiet(
    stderr_file: io.TextIOWrapper,
) -> None:
    setup_logging(json=True, level="DEBUG", stream=stderr_file)
    logging.getLogger("traild.legacy").info("from stdlib %s", 42)
    logging.getLogger("httpx").info("HTTP Request: GET /positions")
    logging.getLogger("sqlalchemy.engine").info("SELECT 1")
    logging.getLogger("httpx").warning("retrying")
    records = [strict_json(x) for x in lines_of(stderr_file)]
    assert [(r["event"], r["message"]) for r in records] == [
        ("lib.traild", "from stdlib 42"),
        ("lib.httpx", "retrying"),
    ]
    assert records[0]["logger"] == "traild.legacy"


def test_setup_twice_does_not_duplicate_lines(stderr_file: io.TextIOWrapper) -> None:
    setup_logging(json=True, stream=stderr_file)
    setup_logging(json=True, stream=stderr_file)
    logger.bind(event="a").info("once")
    assert len(lines_of(stderr_file)) == 1


def test_capture_events_stops_collecting_when_the_block_ends() -> None:
    with capture_events(level="INFO") as events:
        logger.bind(event="x").debug("below the level")
        logger.bind(event="y", n=1).info("kept")
    logger.bind(event="z").info("after")
    assert [(e["event"], e["n"]) for e in events] == [("y", 1)]
