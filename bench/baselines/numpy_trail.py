"""Baseline (b) of ``bench/bench_backtest.py --whole``: the same trailing stop as
``plain_loop.py`` (see there: inputs, rules, output rows), vectorised with NumPy as a user
would write it: pandas reads the ticks, and each trade is trailed a window of ticks at a time.

    python bench/baselines/numpy_trail.py TICKS.csv.gz SIGNALS.csv OUT.csv [--variants 3]

Per trade and window: the running best is ``np.maximum.accumulate`` of the exit-side prices
(``minimum`` for a SELL), the stop in force at each tick is the best stop of the ticks before
it (``best - distance``, never below the initial stop), and the exit is the first tick at or
beyond it or the limit (``argmax`` of the crossing mask). A trade still open at the end of a
window carries its best price and stop into the next, twice as long, window.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

FIRST_WINDOW = 4096


def trail(prices: np.ndarray, start: int, buy: bool, stop: float, limit: float | None,
          distance: float) -> int:  # fmt: skip
    """The index of the exit tick (the last tick if the trade never closes)."""
    n = prices.size
    sign = 1.0 if buy else -1.0  # a SELL is a BUY of the negated prices
    stop = sign * stop
    top = np.inf if limit is None else sign * limit
    best = -np.inf
    window = FIRST_WINDOW
    while start < n:
        p = sign * prices[start : start + window]
        running = np.maximum.accumulate(p)
        np.maximum(running, best, out=running)
        after = np.maximum(running - distance, stop)  # the stop once each tick is seen
        before = np.empty_like(after)
        before[0] = stop
        before[1:] = after[:-1]
        hit = (p <= before) | (p >= top)
        if hit.any():
            return start + int(np.argmax(hit))
        best, stop = float(running[-1]), float(after[-1])
        start += p.size
        window *= 2
    return n - 1


def _utc(text: pd.Series) -> np.ndarray:
    """ISO-8601 UTC strings -> naive datetime64 (UTC), without Python objects per row."""
    return pd.to_datetime(text, utc=True).dt.tz_convert(None).to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ticks")
    parser.add_argument("signals")
    parser.add_argument("out")
    parser.add_argument("--variants", type=int, default=3)
    args = parser.parse_args()
    ticks = pd.read_csv(args.ticks, dtype={"bid": np.float64, "ask": np.float64})
    times = _utc(ticks["ts_utc"])
    bids, asks = ticks["bid"].to_numpy(), ticks["ask"].to_numpy()
    entries = pd.read_csv(args.signals, dtype={"limit_pips": np.float64})
    at = _utc(entries["ts_utc"])
    fills = np.searchsorted(times, at, side="left")
    rows = []
    for variant in range(args.variants):
        factor = max(1.0 - 0.25 * variant, 0.25)
        for trade, e in enumerate(entries.itertuples(index=False)):
            i = int(fills[trade])
            if i >= times.size - 1:
                continue  # no tick after the entry
            pip = 0.01 if "JPY" in e.epic.upper() else 0.0001
            buy = e.direction.strip().upper() == "BUY"
            stop_pips = float(e.stop_pips)
            limit_pips = None if np.isnan(e.limit_pips) else float(e.limit_pips)
            distance = stop_pips * pip * factor
            if buy:
                entry, prices = float(asks[i]), bids
                stop = entry - stop_pips * pip
                limit = None if limit_pips is None else entry + limit_pips * pip
            else:
                entry, prices = float(bids[i]), asks
                stop = entry + stop_pips * pip
                limit = None if limit_pips is None else entry - limit_pips * pip
            k = trail(prices, i + 1, buy, stop, limit, distance)
            exit_price = float(prices[k])
            pnl = (exit_price - entry if buy else entry - exit_price) / pip
            rows.append((trade, variant, k, repr(exit_price), repr(pnl)))
    frame = pd.DataFrame(rows, columns=["trade", "variant", "exit_idx", "exit_price", "pnl_pips"])
    frame.to_csv(args.out, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
