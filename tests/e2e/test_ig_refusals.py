"""``traild run`` against IG refusing its configuration: exit 78, one line, no traceback.

Under systemd a wrong password ends the daemon once and the unit's ``RestartPreventExitStatus=``
keeps systemd from logging in again until IG locks the account; a refused streaming protocol
(CONERR 65) is a configuration error too, not an internal one."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

from tests.adapters.ig.conftest import API_KEY, EURUSD, IDENTIFIER, PASSWORD, sim_in_thread
from tests.e2e.daemon_helpers import log_events, traild

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "traild.service"


def _config(tmp: Path, base_url: str, password: str = PASSWORD, extra: str = "") -> Path:
    path = tmp / "traild.toml"
    path.write_text(
        f"""[broker]
kind = "ig"
[broker.ig]
api_url = "{base_url}"
identifier = "{IDENTIFIER}"
password = "{password}"
api_key = "{API_KEY}"
request_timeout_s = 2.0
{extra}
[feed]
kind = "ig"
epics = ["{EURUSD}"]
[database]
url = {json.dumps(f"sqlite+aiosqlite:///{tmp / 'traild.db'}")}
[daemon]
state_dir = {json.dumps(str(tmp / "state"))}
"""
    )
    return path


def _unit_service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def _systemd_restarts(code: int, service: configparser.SectionProxy) -> bool:
    """systemd.service(5): Restart=on-failure restarts on an unclean exit code unless it is
    listed in RestartPreventExitStatus=."""
    prevent = {int(c) for c in service["RestartPreventExitStatus"].split()}
    return service["Restart"] == "on-failure" and code != 0 and code not in prevent


def test_a_wrong_password_exits_78_once_and_systemd_does_not_restart_it(tmp_path: Path) -> None:
    service = _unit_service()
    with sim_in_thread(lock_after_failures=3) as sim:
        config = _config(tmp_path, sim.base_url, "not-the-password")
        traild("migrate", "--config", str(config))
        runs = []
        while len(runs) < 5:  # what systemd would do, bounded in case it would loop
            run = traild("run", "--config", str(config), check=False, timeout=60)
            runs.append(run)
            if not _systemd_restarts(run.returncode, service):
                break
        attempts = len(sim.requests_to("POST", "session"))
    assert [r.returncode for r in runs] == [78]
    assert attempts == 1  # one refused login: far from IG's lock
    events = log_events(runs[0].stderr)
    errors = [e for e in events if e["level"] in ("ERROR", "CRITICAL")]
    assert len(errors) == 1, errors
    assert errors[0]["event"] == "daemon.refused" and errors[0]["exit_code"] == 78
    assert "error.security.invalid-details" in errors[0]["message"]
    assert "traceback" not in errors[0] and "Traceback" not in runs[0].stderr
    assert "not-the-password" not in runs[0].stderr


def _one_error(stderr: str) -> dict[str, object]:
    errors = [e for e in log_events(stderr) if e["level"] in ("ERROR", "CRITICAL")]
    assert len(errors) == 1, errors
    assert "traceback" not in errors[0] and "Traceback" not in stderr
    return errors[0]


def test_a_refused_streaming_protocol_exits_78_with_one_line_naming_the_version(
    tmp_path: Path,
) -> None:
    with sim_in_thread() as sim:
        config = _config(tmp_path, sim.base_url, extra='tlcp_version = "2.5.0"')
        traild("migrate", "--config", str(config))
        run = traild("run", "--config", str(config), check=False, timeout=60)
        tried = list(sim.stream.protocols)
    assert run.returncode == 78
    error = _one_error(run.stderr)
    assert error["event"] == "daemon.refused" and error["exit_code"] == 78
    message = str(error["message"])
    assert "CONERR 65 (Unsupported protocol version)" in message  # the server's message
    assert "TLCP version TLCP-2.5.0 is the usual cause" in message
    assert tried == ["TLCP-2.5.0"]  # one session tried, once
