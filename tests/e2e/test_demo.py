"""`traild demo`: the daemon on embedded defaults, paper trades, a summary; nothing left behind."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.e2e.daemon_helpers import traild


def test_demo_runs_the_daemon_and_prints_a_summary() -> None:
    run = traild("demo", "--seconds", "8", "--trades", "4", timeout=120)
    out = run.stdout
    assert re.search(r"^trades: 4 \(\d+ closed, \d+ open\)$", out, re.M), out
    assert re.search(
        r"^stops moved by reason: (none|[a-z_0-9]+ \d+(, [a-z_0-9]+ \d+)*)$", out, re.M
    )
    # the demo is never silent: a progress line every 2 s of an 8 s run, on stderr
    progress = re.findall(r"^ +\d+ s: [\d,]+ ticks, \d+ trades open", run.stderr, re.M)
    assert len(progress) == 3, run.stderr
    # prices with the instrument's decimals: 5 for EURUSD, 3 for USDJPY; pips with one
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("DEMO-")}
    assert re.fullmatch(r"\d\.\d{5}", rows["DEMO-1"][3]), rows
    assert re.fullmatch(r"\d{3}\.\d{3}", rows["DEMO-3"][3]), rows
    assert re.search(r"^profit locks confirmed: \d+$", out, re.M)
    assert re.search(r"^closed P&L: [+-]\d+\.\d pips$", out, re.M)
    for deal in ("DEMO-1", "DEMO-2", "DEMO-3", "DEMO-4"):
        assert deal in out
    state = re.search(r"state in (\S+)\)", run.stderr)
    assert state is not None
    assert not Path(state.group(1)).exists()  # the temporary state directory is removed


def test_demo_rejects_bad_arguments_in_one_line() -> None:
    run = traild("demo", "--seconds", "-3", check=False)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr


def test_demo_keep_leaves_a_state_directory_report_reads(tmp_path: Path) -> None:
    run = traild("demo", "--seconds", "1", "--trades", "3", "--keep", timeout=120)
    kept = re.search(r"^state kept in (\S+) \(database and traild\.toml\)", run.stdout, re.M)
    assert kept is not None, run.stdout
    state = Path(kept.group(1))
    try:
        config = state / "traild.toml"
        assert config.is_file() and f"--config {config}" in run.stdout
        report = traild("report", "--since", "all", "--json", "--config", str(config))
        assert '"DEMO-3"' in report.stdout  # the demo's trades, from its database
        html = tmp_path / "report.html"
        traild("report", "--since", "all", "--html", str(html), "--config", str(config))
        counts = re.search(r"(\d+) open, (\d+) closed trades", html.read_text())
        assert counts is not None and int(counts[1]) + int(counts[2]) == 3
    finally:
        shutil.rmtree(state)
