"""Load benchmark of the daemon: 1,000 open trades over 20 epics fed from real ticks.

Replays real tick files (time-aligned so the 20 epics interleave) as fast as possible through
the whole daemon: tick guard, paper broker, router, 1,000 actors, gateway and SQLite store.
Prints ticks/s, p50/p99 tick-to-decision latency (feed emit -> every actor of the epic has
decided and every resulting amendment is confirmed and durable), peak RSS and the start-up
time to READY with 1,000 open trades.

    python bench/bench_daemon.py [--ticks-per-epic 20000] [--trades 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import trio
from loguru import logger

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = (ROOT / ".." / "shared" / "data" / "fx" / "ticks").resolve()

from traild.adapters.store import open_store  # noqa: E402
from traild.adapters.tickfiles import TickColumns, load_ticks  # noqa: E402
from traild.app import Daemon  # noqa: E402
from traild.core.messages import Direction, Tick, TradeRecord, TradeStatus  # noqa: E402
from traild.runtime.router import Router  # noqa: E402
from traild.settings import Settings  # noqa: E402

FOUR = [
    "EURUSD",
    "GBPUSD",
    "AUDUSD",
    "NZDUSD",
    "USDCAD",
    "USDCHF",
    "EURGBP",
    "EURAUD",
    "GBPAUD",
    "EURNZD",
    "AUDNZD",
    "EURCHF",
]
JPY = ["USDJPY", "GBPJPY", "EURJPY", "AUDJPY", "CHFJPY", "CADJPY", "NZDJPY", "SGDJPY"]
SOURCES_FOUR = [
    "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz",
    "EURUSD_fxcm_ticks_2014-05-01_2014-05-15.csv.gz",
    "AUDUSD_truefx_ticks_2020-01-30_2020-01-31.csv.gz",
]
SOURCES_JPY = [
    "GBPJPY_dukascopy_ticks_2012-12-02_2012-12-14.csv.gz",
    "USDJPY_dukascopy_ticks_2019-01-01T23_3h.csv.gz",
]
PERSIST = 1.0
START = np.datetime64("2024-01-08T00:00:00", "ms")


def _slices(per_epic: int, tmp: Path) -> tuple[list[str], list[str], dict[str, Tick]]:
    """20 epics, each a slice of a real file, shifted to start together; written as CSV."""
    files, epics, first = [], [], {}
    loaded = {name: load_ticks(DATA / name) for name in SOURCES_FOUR + SOURCES_JPY}
    plan = [(s, FOUR_SRC) for s, FOUR_SRC in zip(FOUR, [SOURCES_FOUR] * len(FOUR), strict=True)]
    plan += [(s, SRC) for s, SRC in zip(JPY, [SOURCES_JPY] * len(JPY), strict=True)]
    for i, (symbol, sources) in enumerate(plan):
        cols = loaded[sources[i % len(sources)]]
        offset = (i * 7919) % max(1, len(cols) - per_epic)
        n = min(per_epic, len(cols) - offset)
        ts = cols.ts[offset : offset + n]
        shifted = TickColumns(
            START + (ts - ts[0]), cols.bid[offset : offset + n], cols.ask[offset : offset + n]
        )
        epic = f"CS.D.{symbol}.MINI.IP"
        path = tmp / f"{symbol}.csv"
        iso = np.datetime_as_string(shifted.ts, unit="ms")
        digits = 3 if symbol.endswith("JPY") else 5
        with path.open("w") as fh:
            fh.write("ts_utc,bid,ask\n")
            for t, b, a in zip(
                iso.tolist(), shifted.bid.tolist(), shifted.ask.tolist(), strict=True
            ):
                fh.write(f"{t}Z,{b:.{digits}f},{a:.{digits}f}\n")
        files.append(str(path))
        epics.append(epic)
        first[epic] = Tick(epic, datetime(2024, 1, 8, tzinfo=UTC), shifted.bid[0], shifted.ask[0])
    return files, epics, first


async def _seed(url: str, epics: list[str], first: dict[str, Tick], n: int) -> None:
    async with open_store(url, migrate=True) as store:
        for i in range(n):
            epic = epics[i % len(epics)]
            tick = first[epic]
            pip = 0.01 if "JPY" in epic else 0.0001
            direction = Direction.BUY if i % 2 == 0 else Direction.SELL
            entry = tick.ask if direction is Direction.BUY else tick.bid
            stop_pips = 10 + (i * 7) % 40
            stop = entry - direction.sign * stop_pips * pip
            digits = 3 if "JPY" in epic else 5
            await store.add_trade(
                TradeRecord(
                    f"BENCH-{i:05d}",
                    epic,
                    direction,
                    1.0,
                    round(entry, digits),
                    round(stop, digits),
                    round(stop, digits),
                    None,
                    TradeStatus.OPEN,
                    tick.ts,
                    is_scalp_trade=i % 3 == 0,
                )
            )


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would include the parent's, across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_run(
    files: list[str], epics: list[str], first: dict[str, Tick], trades: int, free: bool
) -> dict[str, float]:
    """One daemon run (in this process); returns its figures."""
    with tempfile.TemporaryDirectory(prefix="traild-bench-") as tmp_name:
        settings = Settings(
            # lockstep (speed 0): every amendment is confirmed and durable before the next
            # tick; free-running (a huge speed factor): amendments overlap the ticks.
            feed={
                "kind": "replay",
                "files": files,
                "epics": epics,
                "stop_at_end": True,
                "speed": 1e12 if free else 0.0,
            },
            daemon={"state_dir": tmp_name, "heartbeat_s": 3600.0, "persist_best_every_s": PERSIST},
            broker={"allowance_per_minute": 1_000_000},
        )
        trio.run(_seed, settings.database_url(), epics, first, trades)
        arrivals: dict[int, float] = {}
        latencies: list[float] = []
        marks: dict[str, float] = {}
        daemon = Daemon(settings)
        inner = daemon.on_tick

        async def timed(tick: Tick) -> None:
            arrivals[id(tick)] = time.perf_counter()
            await inner(tick)
            if not free:
                latencies.append(time.perf_counter() - arrivals.pop(id(tick)))

        dispatch = Router._dispatch

        def timed_dispatch(router: Router, tick: Tick, seq: int) -> None:
            dispatch(router, tick, seq)
            if free:  # None: the extremes quote of a coalesced batch
                t0 = arrivals.pop(id(tick), None)
                if t0 is not None:
                    latencies.append(time.perf_counter() - t0)

        Router._dispatch = timed_dispatch  # type: ignore[method-assign]
        daemon.on_tick = timed  # type: ignore[method-assign]

        def sink(message: object) -> None:
            event = message.record["extra"].get("event")  # type: ignore[attr-defined]
            if event in ("daemon.started", "daemon.ready", "feed.finished"):
                marks.setdefault(event, time.perf_counter())

        logger.remove()
        logger.add(sink, level="INFO")
        start = time.perf_counter()
        trio.run(daemon.run)
        feed_time = marks["feed.finished"] - marks["daemon.ready"]
        lat = sorted(latencies)
        return {
            "ticks": daemon.stats.ticks,
            "ticks_per_s": daemon.stats.ticks / feed_time,
            "decisions": len(lat),
            "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
            "ready_s": marks["daemon.ready"] - start,
            "stops_confirmed": daemon.gateway.statistics().confirmed if daemon.gateway else 0,
            "peak_rss_mb": _peak_rss_mb(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks-per-epic", type=int, default=20_000)
    parser.add_argument("--trades", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--free", action="store_true", help="free-running instead of lockstep")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measured run in a fresh process, so RSS is the daemon's own
        job = json.loads(Path(args.child).read_text())
        first = {
            e: Tick(e, datetime(2024, 1, 8, tzinfo=UTC), b, a) for e, (b, a) in job["first"].items()
        }
        print(json.dumps(one_run(job["files"], job["epics"], first, args.trades, args.free)))
        return
    with tempfile.TemporaryDirectory(prefix="traild-bench-data-") as tmp:
        files, epics, first = _slices(args.ticks_per_epic, Path(tmp))
        job = Path(tmp) / "job.json"
        job.write_text(
            json.dumps(
                {
                    "files": files,
                    "epics": epics,
                    "first": {e: [t.bid, t.ask] for e, t in first.items()},
                }
            )
        )
        runs = []
        for _ in range(args.runs):
            cmd = [sys.executable, __file__, "--child", str(job), "--trades", str(args.trades)]
            out = subprocess.run(
                cmd + (["--free"] if args.free else []),
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            ).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    mode = "free-running" if args.free else "lockstep"
    print(
        f"daemon load ({mode}): {args.trades} trades, 20 epics, {int(med['ticks']):,} real "
        f"ticks, median of {args.runs} runs"
    )
    print(f"  ticks/s              {med['ticks_per_s']:>10,.0f}")
    print(f"  tick->decision p50   {med['p50_ms']:>10.3f} ms")
    print(f"  tick->decision p99   {med['p99_ms']:>10.3f} ms")
    print(f"  start-up to READY    {med['ready_s']:>10.2f} s  ({args.trades:,} open trades)")
    print(f"  stops confirmed      {med['stops_confirmed']:>10,.0f}")
    print(f"  peak RSS             {med['peak_rss_mb']:>10.0f} MB")


if __name__ == "__main__":
    main()
