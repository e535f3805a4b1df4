"""``trades.csv`` of a backtest: one row per trade per variant, in ``CSV_COLUMNS`` order (SPEC §8).

Written column by column; the bytes are pinned (``tests/backtest/test_outputs_unchanged.py``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from traild.adapters.tickfiles import ms_to_datetime
from traild.backtest.rows import TradeRow
from traild.backtest.simulate import iso

CSV_COLUMNS = (
    "variant",
    "trade_id",
    "epic",
    "direction",
    "is_scalp",
    "entry_ts",
    "entry",
    "initial_stop",
    "limit",
    "method",
    "fallback_reason",
    "atr_pips",
    "volatility_regime",
    "session",
    "market_regime",
    "exit_ts",
    "exit_price",
    "exit_reason",
    "exit_stop",
    "gap",
    "pnl_pips",
    "mfe_pips",
    "slippage_pips",
    "minutes_to_lock",
    "lock_violation",
    "premature",
    "amendments",
    "path",
    "recalculations",
)


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


PIP_COLUMNS = frozenset(("pnl_pips", "mfe_pips", "slippage_pips", "minutes_to_lock", "atr_pips"))


def write_trades(rows: Sequence[TradeRow], path: Path) -> None:
    """trades.csv: one row per trade per variant, written column by column: each column is
    formatted in one pass for its type (no call per cell; timestamps once per distinct value),
    then the csv module joins and quotes the rows — the same text as formatting every cell
    with ``csv_value``."""
    if rows:
        columns: list[Sequence[Any]] = list(zip(*map(attrgetter(*CSV_COLUMNS), rows), strict=True))
    else:
        columns = [() for _ in CSV_COLUMNS]
    cells = [_csv_column(name, values) for name, values in zip(CSV_COLUMNS, columns, strict=True)]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(zip(*cells, strict=True))


_ISO_RANGE = (-30_610_224_000_000, 253_402_300_799_999)  # years 1000-9999: four digits


def _stamps(values: Sequence[Any]) -> list[str]:
    """Epoch ms as ``iso`` writes them (``2014-05-01T00:01:02.123Z``), formatted by numpy in
    one call; anything unusual (a None, a year of other than four digits) value by value."""
    if values and all(type(v) is int for v in values):
        ms = np.array(values, dtype=np.int64)
        if _ISO_RANGE[0] <= ms.min() and ms.max() <= _ISO_RANGE[1]:
            text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
            return [t + "Z" for t in text.tolist()]
    stamps = {v: iso(ms_to_datetime(v)) or "" for v in dict.fromkeys(values)}
    return [stamps[v] for v in values]


def _csv_column(name: str, values: Sequence[Any]) -> Sequence[str]:
    """The cells of one column, exactly as ``csv_value`` would write each value."""
    if name in ("entry_ts", "exit_ts"):
        return _stamps(values)
    if name in PIP_COLUMNS:  # rounded to 0.01 pips (+ 0.0: no "-0.0")
        values = [None if v is None else round(v, 2) + 0.0 for v in values]
    types = set(map(type, values))
    if types <= {float}:
        return list(map(repr, values))
    if types <= {float, type(None)}:
        return ["" if v is None else repr(v) for v in values]
    if types <= {str}:
        return values
    if types <= {str, type(None)}:
        return ["" if v is None else v for v in values]
    if types <= {int}:
        return list(map(str, values))
    if types <= {bool}:
        return ["true" if v else "false" for v in values]
    return [csv_value(v) for v in values]  # anything else: cell by cell
