"""sd_notify against a real datagram listener, and the unit file checked by systemd itself."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from traild.adapters import systemd
from traild.log import capture_events

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "traild.service"
INSTALLED_BINARY = "/opt/traild/venv/bin/traild"


@pytest.fixture(params=["path", "abstract"])
def listener(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[socket.socket]:
    """A service manager's notify socket: NOTIFY_SOCKET points at it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(5)
    with tempfile.TemporaryDirectory(prefix="sd") as short_dir:  # AF_UNIX paths are short
        if request.param == "path":
            address = os.path.join(short_dir, "notify")
            sock.bind(address)
        else:
            address = f"@traild-test-{os.getpid()}-{secrets.token_hex(4)}"
            sock.bind("\0" + address[1:])
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        try:
            yield sock
        finally:
            sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_reloading_stopping_arrive_as_single_datagrams(listener: socket.socket) -> None:
    assert systemd.ready("3 trades\nfeed ok")
    assert received(listener) == "READY=1\nSTATUS=3 trades feed ok"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.reloading()
    message = received(listener)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    match = re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=(\d+)", message)
    assert match and before <= int(match[1]) <= after
    assert systemd.ready()
    assert received(listener) == "READY=1"
    assert systemd.stopping()
    assert received(listener) == "STOPPING=1"


def test_watchdog_and_status_messages(listener: socket.socket) -> None:
    assert systemd.watchdog()
    assert received(listener) == "WATCHDOG=1"
    assert systemd.status("12 trades, 40 ticks/s — ok")
    assert received(listener) == "STATUS=12 trades, 40 ticks/s — ok"


def test_notify_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.ready("x") is False
    assert systemd.stopping() is False


def test_send_failure_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/traild/notify")
    with capture_events() as events:
        assert systemd.ready() is False
    assert [e["event"] for e in events] == ["systemd.notify_failed"]
    assert events[0]["level"] == "WARNING"


def test_unsupported_address_is_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    with capture_events() as events:
        assert systemd.watchdog() is False
    assert events[0]["event"] == "systemd.notify_failed"


@pytest.mark.parametrize(
    ("usec", "pid", "interval"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "1", None),  # another process's watchdog
        ("0", None, None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, interval: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert systemd.watchdog_interval() == interval


# -- the unit file ----------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert current is not None and sep, f"not a unit file line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def assert_required_keys(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]

    def one(key: str) -> str:
        assert key in service, f"[Service] {key}= missing"
        return service[key][-1]

    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("ExecStart").endswith("traild run --config /etc/traild/traild.toml")
    assert one("ExecStartPre").endswith("traild migrate --wait 60 --config /etc/traild/traild.toml")
    # a database outage must not use up a start limit: systemd never gives up on traild
    assert unit["Unit"]["StartLimitIntervalSec"][-1] == "0"
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("WatchdogSec") == "30"
    assert one("Restart") == "on-failure"
    from traild.daemon.app import EXIT_REFUSED

    assert str(EXIT_REFUSED) in one("RestartPreventExitStatus").split()
    assert one("StateDirectory") == "traild"
    assert one("DynamicUser") == "yes" or one("User") == "traild"
    for key, value in (
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ):
        assert one(key) == value, key
    assert "@system-service" in service["SystemCallFilter"]
    credentials = " ".join(service["LoadCredential"])
    assert "broker__ig__password:" in credentials and "broker__ig__api_key:" in credentials
    assert int(one("TimeoutStopSec")) > 0
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on a copy whose binary exists on this machine."""
    copy = tmp_path / "traild.service"
    copy.write_text(unit_text.replace(INSTALLED_BINARY, sys.executable))
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unit_declares_notify_watchdog_restart_policy_and_hardening() -> None:
    assert_required_keys(parse_unit(UNIT.read_text()))


def test_unit_passes_systemd_analyze_verify_without_any_warning(tmp_path: Path) -> None:
    text = UNIT.read_text()
    if shutil.which("systemd-analyze") is None:
        # No systemd tools on this machine: the static check is all that can be asserted.
        assert_required_keys(parse_unit(text))
        return
    result = verify(text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    # The check can fail: a misspelt key is only a warning, and it must be caught.
    broken = verify(text.replace("WatchdogSec=30", "WatchdogSecs=30"), tmp_path)
    assert "WatchdogSecs" in broken.stderr


def test_env_example_holds_only_traild_variables_and_no_secrets() -> None:
    example = UNIT.with_name("traild.env.example").read_text()
    assignments = [
        line.lstrip("#").strip()
        for line in example.splitlines()
        if re.match(r"#?\s*[A-Z_]+=", line)
    ]
    assert assignments
    assert all(a.startswith("TRAILD_") for a in assignments)
    assert not any(re.search(r"PASSWORD|API_KEY", a) for a in assignments)
