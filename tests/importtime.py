"""What a ``python -X importtime -m traild ...`` process imported (start-up tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def traild_imports(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> tuple[set[str], str]:
    """Run ``traild ARGV`` (it must succeed); the top-level packages and traild modules it
    imported, and its stdout."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "traild", *argv],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    names = set()
    for line in run.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[-1].strip()
            names.add(name if name.startswith("traild") else name.split(".")[0])
    return names, run.stdout
