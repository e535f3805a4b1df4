"""Load benchmark of the daemon: N open trades over 20 epics fed from real ticks.

Replays real tick files (time-aligned so the 20 epics interleave) through the whole daemon:
tick guard, paper broker, router, N actors, gateway and the store (SQLite, or PostgreSQL with
``--database postgresql``). Each run is a fresh process; the figures are medians of the runs:

* ticks/s: ticks accepted by the daemon per second of feed time (READY to feed end). Free-running,
  ticks merged away by the latest-wins mailboxes count here too: see published / dispatched /
  coalesced and actor-ticks, which count what the actors really processed.
* tick->decision: feed emit -> every actor of the epic has decided (lockstep: and the gateway is
  idle again, i.e. every resulting amendment was answered by the broker).
* tick->request: feed emit of the tick that made an actor decide -> the amendment request reaches
  the broker (``amend_stop`` called).
* READY: process start of the daemon run -> ``daemon.ready`` (reconciliation, broker positions,
  adoption of every open trade).
* poll stall: the longest single trio task step of the store poll (the housekeeping task and the
  trio-asyncio loop task) after READY, measured with a trio Instrument; and the longest step of
  any task, with the time the garbage collector ran inside it (``gc.callbacks``).
* store writes/s, queued at end: writes the store committed per second of feed time, and the
  writes still queued when the feed ended (a backlog the store had not caught up with).

    python bench/bench_daemon.py [--ticks-per-epic 20000] [--trades 1000] [--runs 3] [--free]
                                 [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import trio
from loguru import logger

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = (ROOT / ".." / "shared" / "data" / "fx" / "ticks").resolve()

from traild.adapters.paper import PaperBroker  # noqa: E402
from traild.adapters.store import open_store  # noqa: E402
from traild.adapters.tickfiles import TickColumns, load_ticks  # noqa: E402
from traild.config.settings import Settings  # noqa: E402
from traild.core.messages import Direction, Tick, TradeRecord, TradeStatus  # noqa: E402
from traild.daemon.app import Daemon  # noqa: E402
from traild.runtime.gateway import AmendTarget, Gateway  # noqa: E402
from traild.runtime.router import Router  # noqa: E402
from traild.runtime.supervisor import Supervisor  # noqa: E402

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
    async with open_store(url, migrate=True, write_timeout=60) as store:
        for start in range(0, n, 500):  # concurrently: the store commits them in batches
            async with trio.open_nursery() as nursery:
                for i in range(start, min(n, start + 500)):
                    nursery.start_soon(store.add_trade, _bench_trade(i, epics, first))


def _bench_trade(i: int, epics: list[str], first: dict[str, Tick]) -> TradeRecord:
    epic = epics[i % len(epics)]
    tick = first[epic]
    pip = 0.01 if "JPY" in epic else 0.0001
    direction = Direction.BUY if i % 2 == 0 else Direction.SELL
    entry = tick.ask if direction is Direction.BUY else tick.bid
    stop_pips = 10 + (i * 7) % 40
    stop = entry - direction.sign * stop_pips * pip
    digits = 3 if "JPY" in epic else 5
    return TradeRecord(
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


class StallMeter(trio.abc.Instrument):
    """The longest task step after READY: overall, and of the store poll — the steps of the
    housekeeping task that runs it, and of the trio-asyncio loop task while a poll is in
    flight (an upper bound: a write committed meanwhile counts too)."""

    def __init__(self) -> None:
        self.armed = False
        self.arm_next = False  # READY is logged mid-step: measure from the next step on
        self.polling = False
        self.started = 0.0
        self.max_any = 0.0
        self.max_any_task = ""
        self.max_any_gc = 0.0  # of the longest step: time spent in the garbage collector
        self.max_poll = 0.0
        self.gc_in_step = 0.0
        self._gc_started = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_in_step += time.perf_counter() - self._gc_started

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.arm_next:
            self.armed, self.arm_next = True, False
        self.gc_in_step = 0.0
        self.started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if not self.armed:
            return
        step = time.perf_counter() - self.started
        name = task.name
        if step > self.max_any:
            self.max_any, self.max_any_task, self.max_any_gc = step, name, self.gc_in_step
        if name.endswith("_housekeeping") or (self.polling and name.endswith("_main_loop")):
            self.max_poll = max(self.max_poll, step)


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would include the parent's, across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_run(
    files: list[str],
    epics: list[str],
    first: dict[str, Tick],
    trades: int,
    free: bool,
    url: str | None,
) -> dict[str, float]:
    """One daemon run (in this process); returns its figures."""
    with tempfile.TemporaryDirectory(prefix="traild-bench-") as tmp_name:
        settings = Settings(
            # lockstep (speed 0): every amendment is answered by the broker before the next
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
            database={"url": url or "sqlite+aiosqlite:///traild.db"},
        )
        trio.run(_seed, settings.database_url(), epics, first, trades)
        m = _Measures(free)
        daemon = Daemon(settings)
        m.attach(daemon)
        logger.remove()
        logger.add(m.sink, level="INFO")
        start = time.perf_counter()
        try:
            trio.run(daemon.run, instruments=[m.stalls])
        finally:
            m.detach()
        print(
            f"longest task step after READY: {m.stalls.max_any * 1000:.1f} ms"
            f" ({m.stalls.max_any_task}; {m.stalls.max_any_gc * 1000:.1f} ms of it in the"
            " garbage collector)",
            file=sys.stderr,
        )
        return m.figures(daemon, start)


class _Measures:
    """Timestamps taken by wrapping the daemon's tick entry, the router's dispatch, the
    gateway's submit and the paper broker's amend_stop (class attributes, this process only)."""

    def __init__(self, free: bool) -> None:
        self.free = free
        self.arrivals: dict[int, float] = {}
        self.decisions: list[float] = []
        self.requests: list[float] = []
        self.current = 0.0  # arrival of the tick being dispatched
        self.pending: dict[str, float] = {}  # deal id -> arrival of the tick that decided
        self.marks: dict[str, float] = {}
        self.stalls = StallMeter()
        self.rows_at_ready = 0
        self.writes_at_ready = 0
        self.writes_at_end = (0, 0)
        self.held_s = 0.0  # the replay's waits for the store's backlog (feed.finished)
        self.daemon: Daemon | None = None
        self._saved = (Router._dispatch, Gateway.submit, PaperBroker.amend_stop)
        self._poll = Supervisor.poll_store

    def attach(self, daemon: Daemon) -> None:
        self.daemon = daemon
        inner = daemon.on_tick
        dispatch, submit, amend = self._saved
        m = self

        async def timed(tick: Tick) -> None:
            m.arrivals[id(tick)] = m.current = time.perf_counter()
            await inner(tick)
            if not m.free:
                m.decisions.append(time.perf_counter() - m.arrivals.pop(id(tick)))

        def timed_dispatch(router: Router, tick: Tick, seq: int) -> None:
            if m.free:  # None: the extremes quote of a coalesced batch
                m.current = m.arrivals.get(id(tick), m.current)
            dispatch(router, tick, seq)
            if m.free:
                t0 = m.arrivals.pop(id(tick), None)
                if t0 is not None:
                    m.decisions.append(time.perf_counter() - t0)

        def timed_submit(gateway: Gateway, target: AmendTarget) -> None:
            m.pending.setdefault(target.deal_id, m.current)
            submit(gateway, target)

        async def timed_amend(
            broker: PaperBroker, deal_id: str, stop: float, limit: float | None
        ) -> object:
            t0 = m.pending.pop(deal_id, None)
            if t0 is not None:
                m.requests.append(time.perf_counter() - t0)
            return await amend(broker, deal_id, stop, limit)

        poll = self._poll

        async def timed_poll(sup: Supervisor) -> None:
            m.stalls.polling = True
            try:
                await poll(sup)
            finally:
                m.stalls.polling = False

        Supervisor.poll_store = timed_poll  # type: ignore[method-assign]
        Router._dispatch = timed_dispatch  # type: ignore[method-assign]
        Gateway.submit = timed_submit  # type: ignore[method-assign]
        PaperBroker.amend_stop = timed_amend  # type: ignore[assignment,method-assign]
        daemon.on_tick = timed  # type: ignore[method-assign]

    def detach(self) -> None:
        Router._dispatch, Gateway.submit, PaperBroker.amend_stop = self._saved  # type: ignore[method-assign]
        Supervisor.poll_store = self._poll  # type: ignore[method-assign]

    def sink(self, message: object) -> None:
        event = message.record["extra"].get("event")  # type: ignore[attr-defined]
        if event in ("daemon.started", "daemon.ready", "feed.finished"):
            self.marks.setdefault(event, time.perf_counter())
        if event == "daemon.ready":
            self.stalls.arm_next = True
            self.rows_at_ready = self._rows_read()
            self.writes_at_ready = self._writes()[1]
        elif event == "feed.finished":
            self.stalls.armed = False
            self.held_s = float(message.record["extra"].get("held_s", 0.0))  # type: ignore[attr-defined]
            self.writes_at_end = self._writes()

    def _writes(self) -> tuple[int, int]:
        """The store's queued and committed writes now."""
        sup = self.daemon.supervisor if self.daemon else None
        if sup is None:
            return 0, 0
        stats = sup.store.statistics()
        return stats.queued_writes, stats.committed_writes

    def _rows_read(self) -> int:
        sup = self.daemon.supervisor if self.daemon else None
        return int(getattr(sup.store, "trade_rows_read", 0)) if sup else 0

    def figures(self, daemon: Daemon, start: float) -> dict[str, float]:
        feed_time = self.marks["feed.finished"] - self.marks["daemon.ready"]
        lat, req = sorted(self.decisions), sorted(self.requests) or [0.0]
        assert daemon.router is not None and daemon.supervisor is not None
        r = daemon.router.statistics()
        return {
            "ticks": daemon.stats.ticks,
            "ticks_per_s": daemon.stats.ticks / feed_time,
            "published": r.published,
            "dispatched": r.dispatched,
            "coalesced": r.coalesced,
            "actor_ticks_per_s": r.delivered / feed_time,
            "skipped": r.skipped,
            "decisions": len(lat),
            "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
            "requests": len(self.requests),
            "req_p50_ms": req[len(req) // 2] * 1000,
            "req_p99_ms": req[int(len(req) * 0.99)] * 1000,
            "ready_s": self.marks["daemon.ready"] - start,
            "adopted": daemon.supervisor.counts["adopted"],
            "poll_rows_after_ready": self._rows_read() - self.rows_at_ready,
            "poll_stall_ms": self.stalls.max_poll * 1000,
            "max_step_ms": self.stalls.max_any * 1000,
            "max_step_gc_ms": self.stalls.max_any_gc * 1000,
            "stops_confirmed": daemon.gateway.statistics().confirmed if daemon.gateway else 0,
            "writes_per_s": (self.writes_at_end[1] - self.writes_at_ready) / feed_time,
            "writes_queued_at_end": self.writes_at_end[0],
            "held_s": self.held_s,
            "peak_rss_mb": _peak_rss_mb(),
        }


def _pg_database(name: str, drop: bool) -> str:
    async def run() -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if not drop:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    trio.run(_asyncio_bridge, run)
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def _asyncio_bridge(fn: object) -> None:
    import trio_asyncio

    async with trio_asyncio.open_loop() as loop:
        await trio_asyncio.aio_as_trio(fn, loop=loop)()  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks-per-epic", type=int, default=20_000)
    parser.add_argument("--trades", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--free", action="store_true", help="free-running instead of lockstep")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one measured run in a fresh process, so RSS is the daemon's own
        job = json.loads(Path(args.child).read_text())
        first = {
            e: Tick(e, datetime(2024, 1, 8, tzinfo=UTC), b, a) for e, (b, a) in job["first"].items()
        }
        figures = one_run(job["files"], job["epics"], first, args.trades, args.free, args.url)
        print(json.dumps(figures))
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
        runs = [_child(args, job, n) for n in range(args.runs)]
    _print(args, runs)


def _child(args: argparse.Namespace, job: Path, n: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", str(job), "--trades", str(args.trades)]
    cmd += ["--free"] if args.free else []
    name = f"traild_bench_{os.getpid()}_{n}"
    if args.database == "postgresql":
        cmd += ["--url", _pg_database(name, drop=False)]
    try:
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    finally:
        if args.database == "postgresql":
            _pg_database(name, drop=True)
    return dict(json.loads(out.strip().splitlines()[-1]))


def _print(args: argparse.Namespace, runs: list[dict[str, float]]) -> None:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    mode = "free-running" if args.free else "lockstep"
    print(
        f"daemon load ({mode}, {args.database}): {args.trades:,} trades, 20 epics, "
        f"{int(med['ticks']):,} real ticks, median of {args.runs} runs"
    )
    rows = [
        ("ticks/s (accepted)", f"{med['ticks_per_s']:,.0f}"),
        ("published / dispatched", f"{med['published']:,.0f} / {med['dispatched']:,.0f}"),
        ("coalesced", f"{med['coalesced']:,.0f}"),
        ("actor-ticks/s delivered", f"{med['actor_ticks_per_s']:,.0f}"),
        ("actor-ticks skipped (quiet)", f"{med['skipped']:,.0f}"),
        ("tick->decision p50/p99", f"{med['p50_ms']:.3f} / {med['p99_ms']:.3f} ms"),
        (
            "tick->request p50/p99",
            f"{med['req_p50_ms']:.3f} / {med['req_p99_ms']:.3f} ms ({med['requests']:,.0f})",
        ),
        ("start-up to READY", f"{med['ready_s']:.2f} s (adopted {med['adopted']:,.0f})"),
        (
            "poll: rows read / stall",
            f"{med['poll_rows_after_ready']:,.0f} / "
            f"{med['poll_stall_ms']:.1f} ms (longest step of any task {med['max_step_ms']:.1f} ms,"
            f" {med['max_step_gc_ms']:.1f} ms of it in the garbage collector)",
        ),
        (
            "store writes/s, queued at end",
            f"{med['writes_per_s']:,.0f} / {med['writes_queued_at_end']:,.0f}",
        ),
        ("feed held for the store", f"{med['held_s']:.1f} s"),
        ("stops confirmed", f"{med['stops_confirmed']:,.0f}"),
        ("peak RSS", f"{med['peak_rss_mb']:.0f} MB"),
    ]
    for name, value in rows:
        print(f"  {name:<26}{value}")
    print("  per run: " + json.dumps(runs))


if __name__ == "__main__":
    main()
