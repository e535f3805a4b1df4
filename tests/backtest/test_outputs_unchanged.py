"""Faster outputs write the same bytes (issue 24): trades.csv and summary.json of fixed runs on
the shared data equal those of 0.3.0, and the column-wise csv writer equals formatting every
cell with ``csv_value``."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pytest

from tests.backtest.helpers import GBPJPY
from traild.adapters.tickfiles import ms_to_datetime
from traild.backtest import trades_csv
from traild.backtest.rows import TradeRow
from traild.backtest.simulate import iso
from traild.cli import main

# sha256 of the outputs of `traild backtest <input> --random 300 --seed 1` with an empty config:
# trades.csv as written by 0.3.0 before the column-wise writer; summary.json as written once the
# per-pair figures were added (the writer rewrite left it unchanged)
GOLDEN = {
    "gbpjpy_ticks": (
        "213c5443a8724cdc6e86b88853838aa390f236a895a39898101b4920fbd98767",
        # summary.json gained the per-pair figures (`by_pair`, issue 23) after the 0.3.0 pin
        "a2e5c5e055cda30ebdca9c915b62211d62cc74e2dfdf05bcbf8e4d0a8db9917a",
    ),
    "eurusd_bars_2017": (
        "f2e84dc589293e4d0626c9baff404c43f097653ed5a68c3865ade63a16a8cde0",
        # summary.json gained the per-pair figures (`by_pair`, issue 23) after the 0.3.0 pin
        "8ecadd41c552521c3ec3a84e5c6c6820d395f8fe3b8ad78bb7a1918e8b890bd5",
    ),
}


@pytest.mark.parametrize("run", sorted(GOLDEN))
def test_outputs_on_the_shared_data_are_byte_for_byte_those_of_0_3_0(
    run: str, shared_data_dir: Path, tmp_path: Path, empty_config: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    if run == "gbpjpy_ticks":
        source = ["--ticks", str(shared_data_dir / "ticks" / GBPJPY)]
    else:
        bars = shared_data_dir / "bars_m1" / "EURUSD_histdata_m1_bid_2017.csv.gz"
        source = ["--bars", str(bars)]
    out = tmp_path / "out"
    args = [*source, "--random", "300", "--seed", "1", "--out", str(out)]
    assert main(["backtest", *args, "--config", str(empty_config)]) == 0
    capsys.readouterr()
    got = tuple(
        hashlib.sha256((out / name).read_bytes()).hexdigest()
        for name in ("trades.csv", "summary.json")
    )
    assert got == GOLDEN[run]


def _row(n: int, **fields: object) -> TradeRow:
    base: dict[str, object] = dict(
        variant="fixed", trade_id=n, epic="CS.D.EURUSD.MINI.IP", direction="BUY",
        is_scalp=False, entry_ts=1_398_902_400_000 + n, entry=1.38765, initial_stop=1.38565,
        limit=None, method="fixed", fallback_reason=None, atr_pips=None,
        volatility_regime=None, session="asian", market_regime=None,
        exit_ts=1_398_902_460_000, exit_price=1.3877, exit_reason="stop", exit_stop=None,
        gap=False, pnl_pips=0.5, mfe_pips=1.0, slippage_pips=None, minutes_to_lock=None,
        lock_violation=False, lock_slippage_loss=False, premature=False, amendments=0,
        path="fast",
    )  # fmt: skip
    base.update(fields)
    return TradeRow(**base)  # type: ignore[arg-type]


def _cell_by_cell(rows: list[TradeRow]) -> str:
    """0.3.0's writer, with the column-wise one's inputs: one ``csv_value`` per cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(trades_csv.CSV_COLUMNS)
    for r in rows:
        values = []
        for name in trades_csv.CSV_COLUMNS:
            v = getattr(r, name)
            if name in ("entry_ts", "exit_ts"):
                v = iso(ms_to_datetime(v))
            elif name in trades_csv.PIP_COLUMNS and v is not None:
                v = round(v, 2) + 0.0
            values.append(trades_csv.csv_value(v))
        writer.writerow(values)
    return buffer.getvalue()


def test_the_column_wise_csv_writer_equals_formatting_every_cell(tmp_path: Path) -> None:
    rows = [
        _row(1),
        _row(2, variant='grid[a=1,b="2"]', fallback_reason="inconsistent_stages", limit=1.4,
             atr_pips=-0.004, pnl_pips=-0.001, mfe_pips=1e-9, slippage_pips=0.125,
             minutes_to_lock=12.345, gap=True, premature=True, amendments=3,
             market_regime="line\nbreak"),
        _row(3, exit_stop=1.38, atr_pips=7.0, volatility_regime="high", entry=1e16),
        _row(4, amendments=True, limit=2),  # odd types: cell by cell, as before
    ]  # fmt: skip
    path = tmp_path / "trades.csv"
    trades_csv.write_trades(rows, path)
    assert path.read_text(encoding="utf-8") == _cell_by_cell(rows)
    trades_csv.write_trades([], path)
    assert path.read_text(encoding="utf-8") == _cell_by_cell([])
