"""Baseline (a) of ``bench/bench_backtest.py --whole``: a trailing stop as a user would write it
without traild, one plain Python loop per trade over ticks read with the ``csv`` module.

    python bench/baselines/plain_loop.py TICKS.csv.gz SIGNALS.csv OUT.csv [--variants 3]

* Ticks: a (gzip'd) CSV ``ts_utc,bid,ask`` with ISO-8601 UTC times of one fixed format, read
  row by row into lists of floats. The times stay strings: in one fixed format they sort as
  the times do, so an entry is found by bisection.
* Entries: ``ts_utc,epic,direction,stop_pips,limit_pips``; each fills at the first tick at or
  after ``ts_utc`` (a BUY at the ask, a SELL at the bid). Pip: 0.01 for JPY pairs, else 0.0001.
* Trailing: from the next tick on, the exit-side price (bid for a BUY, ask for a SELL) closes the
  trade at the stop or the limit (the stop in force before the tick); otherwise a new best price
  moves the stop to ``best - distance`` if that is better. A trade still open at the end of the
  file closes at the last tick.
* ``--variants K`` (default 3, as traild's 3 variants): K trailing distances, the entry's stop
  distance x 1, 0.75, 0.5, ... (``1 - 0.25 k``, at least 0.25), each over every trade.
* Writes one row per trade and variant: ``trade,variant,exit_idx,exit_price,pnl_pips``
  (``numpy_trail.py`` must write the same rows: the bench compares them).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gzip
import io


def read_ticks(path: str) -> tuple[list[str], list[float], list[float]]:
    opener = gzip.open if path.endswith(".gz") else open
    times: list[str] = []
    bids: list[float] = []
    asks: list[float] = []
    with opener(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader)]
        t, b, a = header.index("ts_utc"), header.index("bid"), header.index("ask")
        for row in reader:
            times.append(row[t])
            bids.append(float(row[b]))
            asks.append(float(row[a]))
    return times, bids, asks


def factors(variants: int) -> list[float]:
    return [max(1.0 - 0.25 * k, 0.25) for k in range(variants)]


def trail(prices: list[float], start: int, buy: bool, stop: float, limit: float | None,
          distance: float) -> int:  # fmt: skip
    """The index of the exit tick (the last tick if the trade never closes)."""
    n = len(prices)
    if buy:
        top = float("inf") if limit is None else limit
        best = float("-inf")
        for i in range(start, n):
            v = prices[i]
            if v <= stop or v >= top:
                return i
            if v > best:
                best = v
                if best - distance > stop:
                    stop = best - distance
    else:
        bottom = float("-inf") if limit is None else limit
        best = float("inf")
        for i in range(start, n):
            v = prices[i]
            if v >= stop or v <= bottom:
                return i
            if v < best:
                best = v
                if best + distance < stop:
                    stop = best + distance
    return n - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ticks")
    parser.add_argument("signals")
    parser.add_argument("out")
    parser.add_argument("--variants", type=int, default=3)
    args = parser.parse_args()
    times, bids, asks = read_ticks(args.ticks)
    with open(args.signals, newline="") as fh:
        entries = list(csv.DictReader(fh))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trade", "variant", "exit_idx", "exit_price", "pnl_pips"])
    for variant, factor in enumerate(factors(args.variants)):
        for trade, e in enumerate(entries):
            i = bisect.bisect_left(times, e["ts_utc"])
            if i >= len(times) - 1:
                continue  # no tick after the entry
            pip = 0.01 if "JPY" in e["epic"].upper() else 0.0001
            buy = e["direction"].strip().upper() == "BUY"
            stop_pips = float(e["stop_pips"])
            limit_pips = float(e["limit_pips"]) if e["limit_pips"].strip() else None
            distance = stop_pips * pip * factor
            if buy:
                entry, prices = asks[i], bids
                stop = entry - stop_pips * pip
                limit = None if limit_pips is None else entry + limit_pips * pip
            else:
                entry, prices = bids[i], asks
                stop = entry + stop_pips * pip
                limit = None if limit_pips is None else entry - limit_pips * pip
            k = trail(prices, i + 1, buy, stop, limit, distance)
            pnl = (prices[k] - entry if buy else entry - prices[k]) / pip
            writer.writerow([trade, variant, k, repr(prices[k]), repr(pnl)])
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(out.getvalue())


if __name__ == "__main__":
    main()
