"""Rollout reporting and the configuration service's poll.

    .venv/bin/python bench/bench_rollout.py [--trades 5000] [--samples 1000] [--polls 200]

1. ``rollout status`` and ``report --vs-backtest`` computations (day bootstrap, numpy) over N
   synthetic closed trades on five pairs and 250 trading days, median of 5 runs.
2. The daemon's idle configuration poll (one ``max(id)`` on the audit table) against a SQLite
   file, mean per poll; and a full re-read of 50 overrides, for comparison.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from traild.adapters.store import open_store  # noqa: E402
from traild.config.settings import Settings  # noqa: E402
from traild.reporting.live import LiveTrade  # noqa: E402
from traild.reporting.rollout import rollout_status  # noqa: E402
from traild.reporting.vs_backtest import compare  # noqa: E402

PAIRS = ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "EURGBP"]


def trades(n: int) -> list[LiveTrade]:
    r = random.Random(1)
    methods = ("dynamic_volatility", "fixed")
    return [
        LiveTrade(
            f"CS.D.{r.choice(PAIRS)}.MINI.IP",
            r.choice(methods),
            r.gauss(2, 10),
            date(2024, 1, 1) + timedelta(days=r.randrange(250)),
            abs(r.gauss(10, 5)),
            r.random() < 0.5,
            r.random() * 30,
        )
        for _ in range(n)
    ]


def timed(fn: object, runs: int = 5) -> float:
    assert callable(fn)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def poll_costs(polls: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        async with open_store(url, migrate=True) as store:
            cs = store.config_store()
            changes = {(p, f"regular.stage{i % 2 + 1}_lock"): 5.0 + i for i, p in
                       enumerate(PAIRS * 10)}  # fmt: skip
            await cs.apply_changes(changes, "bench", datetime.now(UTC), 0)
            start = time.perf_counter()
            for _ in range(polls):
                await cs.config_version()
            idle = (time.perf_counter() - start) / polls
            start = time.perf_counter()
            for _ in range(polls):
                await cs.config_overrides()
            full = (time.perf_counter() - start) / polls
    return idle, full


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trades", type=int, default=5000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--polls", type=int, default=200)
    args = ap.parse_args()
    rows = trades(args.trades)
    s = Settings(
        trailing={"enable_dynamic_trailing": True, "dynamic_trailing_pairs": ["EURUSD"]},
        rollout={"bootstrap_samples": args.samples},
    )
    summary = {"variants": {"dynamic+lock": {"expectancy_pips": 2.2},
                            "fixed+lock": {"expectancy_pips": 2.0}}}  # fmt: skip
    print(f"{args.trades} closed trades, {args.samples} bootstrap samples (median of 5 runs)")
    print(f"  rollout status   {timed(lambda: rollout_status(s, rows)) * 1000:8.1f} ms")
    print(f"  vs-backtest      {timed(lambda: compare(s, rows, summary)) * 1000:8.1f} ms")
    idle, full = trio.run(poll_costs, args.polls)
    print(f"config poll on SQLite, mean of {args.polls}")
    print(f"  idle (version only)        {idle * 1e6:8.0f} us")
    print(f"  full re-read (50 overrides) {full * 1e6:8.0f} us")


if __name__ == "__main__":
    main()
