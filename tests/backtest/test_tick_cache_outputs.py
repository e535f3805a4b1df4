"""No behaviour change from the parsed-tick cache (issue 24): a backtest on a real tick file
writes the same trades.csv and summary.json, byte for byte, without the cache, on the run
that fills it, and on a run that reads it. (That these equal the outputs of earlier releases is
``test_outputs_unchanged``'s pin.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backtest.helpers import GBPJPY, OANDA
from traild.adapters import tickfiles
from traild.cli import main

OUTPUTS = ("trades.csv", "summary.json")


def _run(ticks: Path, out: Path, config: Path, *extra: str) -> dict[str, bytes]:
    args = ["--ticks", str(ticks), "--random", "300", "--seed", "1", "--out", str(out)]
    assert main(["backtest", *args, "--config", str(config), *extra]) == 0
    return {name: (out / name).read_bytes() for name in OUTPUTS}


@pytest.mark.parametrize("name", [GBPJPY, OANDA])
def test_cached_and_uncached_runs_write_the_same_bytes(
    name: str, ticks_dir: Path, tmp_path: Path, empty_config: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRAILD_CACHE_DIR", str(cache))
    monkeypatch.delenv("TRAILD_NO_CACHE", raising=False)
    reference = _run(ticks_dir / name, tmp_path / "reference", empty_config, "--no-cache")
    assert not cache.exists()  # --no-cache: nothing read, nothing stored
    filling = _run(ticks_dir / name, tmp_path / "filling", empty_config)
    assert len(list(cache.glob("*.npz"))) == 1

    def no_parsing(raw: bytes, p: Path) -> tickfiles.TickColumns:
        raise AssertionError(f"{p.name} parsed again: the cache missed")

    monkeypatch.setattr(tickfiles, "_parse", no_parsing)
    hit = _run(ticks_dir / name, tmp_path / "hit", empty_config)
    capsys.readouterr()
    assert filling == reference
    assert hit == reference
