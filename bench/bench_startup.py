"""Start-up benchmark: how long the light commands take from exec to exit, against bare Python.

Each command runs as a fresh process (``python -m traild ...`` with this checkout first on
PYTHONPATH, a clean TRAILD_* environment and a temporary state directory); the figure is the
median wall time of ``--runs`` runs after one warm-up run (so the OS file cache is warm, as it
is for a user's second command). ``python -c pass`` is the floor; ``import-only`` columns
show what each command imports that ``traild --version`` does not.

Commands: ``--version``, ``calc``, ``halt``, ``resume``, ``config show`` (on a migrated SQLite
database, so it really reads the overrides) and, for scale, ``simulate --help``.

Run:  .venv/bin/python bench/bench_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass", ["-c", "pass"]),
    ("traild --version", ["-m", "traild", "--version"]),
    ("traild calc", ["-m", "traild", "calc", "--epic", "EURUSD", "--atr-pips", "8"]),
    ("traild halt", ["-m", "traild", "halt"]),
    ("traild resume", ["-m", "traild", "resume"]),
    ("traild config show", ["-m", "traild", "config", "show"]),
    ("traild simulate --help", ["-m", "traild", "simulate", "--help"]),
]


def environment(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TRAILD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["TRAILD_DAEMON__STATE_DIR"] = str(state)
    env["TRAILD_CONFIG"] = str(state / "empty.toml")
    return env


def wall_time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def heavy_modules(argv: list[str], env: dict[str, str]) -> str:
    """The large third-party packages the command imports (from ``python -X importtime``)."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], env=env, capture_output=True, text=True
    )
    names = set()
    for line in run.stderr.splitlines():
        name = line.rsplit("|", 1)[-1].strip()
        top = name.split(".")[0]
        if top in {"numpy", "trio", "sqlalchemy", "pydantic", "loguru", "matplotlib", "httpx"}:
            names.add(top)
    return ", ".join(sorted(names)) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command (default 7)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="traild-bench-") as tmp:
        state = Path(tmp)
        (state / "empty.toml").write_text("")
        env = environment(state)
        subprocess.run([sys.executable, "-m", "traild", "migrate"], env=env, check=True)
        print(f"{'command':<26} {'median':>8} {'min':>8} {'vs python':>10}  imports")
        floor = None
        for label, argv in COMMANDS:
            wall_time(argv, env)  # warm-up
            times = [wall_time(argv, env) for _ in range(opts.runs)]
            median = statistics.median(times)
            floor = median if floor is None else floor
            print(
                f"{label:<26} {median * 1000:>6.0f}ms {min(times) * 1000:>6.0f}ms "
                f"{median - floor:>+9.2f}s  {heavy_modules(argv, env)}"
            )
    print(f"\n{opts.runs} runs each (median, min); CPU count {os.cpu_count()}")


if __name__ == "__main__":
    main()
