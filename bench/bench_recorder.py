"""The tick recorder's cost on the tick path ([feed] record = true).

    .venv/bin/python bench/bench_recorder.py [--ticks 200000] [--runs 5] [--rate 1000]
                                             [--trades 500]

Real EURUSD ticks (OANDA, May 2014) go through the daemon's per-tick work that runs before the
actors (tick guard, M15 bar history) in a trio task, with the recorder off and on. With it on,
each tick is also handed to ``TickRecorder.add`` and the recorder's background task flushes
every 50 ms: a worker thread turns the batch into columns and the writer process formats,
compresses and appends the day files *while the tick loop runs* (so the figure includes the
columns' share of the daemon's GIL). Figures are medians over ``--runs`` runs:

* ns/tick, off and on, and the difference: what recording adds to each tick's latency budget;
* ``add`` alone (ns/call): the only call the tick path makes;
* the writer's throughput (``DayFiles``, as the writer process runs it; ticks/s) and the bytes
  per tick on disk;
* paced, as a live feed delivers them (``--rate`` ticks/s, 10 s of ticks): each tick's delay
  from its due time to the end of its processing, p50 / p99 / max, off and on. This is where
  the writer's share of the GIL would show as latency;
* ``report --counterfactual``'s work: the whole file recorded (15 days), ``--trades`` closed
  trades at random ticks replayed in fixed, fixed+lock, dynamic+lock and their own stages
  (loading the recording included).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402
import trio.lowlevel  # noqa: E402
from loguru import logger  # noqa: E402

from traild.adapters.recorder import TickRecorder, columns_of  # noqa: E402
from traild.adapters.tickfiles import load_ticks  # noqa: E402
from traild.adapters.tickwriter import DayFiles  # noqa: E402
from traild.config.settings import Settings  # noqa: E402
from traild.core.conditions import BarHistory, TickGuard  # noqa: E402
from traild.core.messages import Tick  # noqa: E402

DATA = (ROOT / ".." / "shared" / "data" / "fx" / "ticks").resolve()
SOURCE = DATA / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
EPIC = "CS.D.EURUSD.MINI.IP"
YIELD_EVERY = 64  # the loop yields to trio as a feed would (other tasks run between ticks)


def load(n: int) -> list[Tick]:
    return list(load_ticks(SOURCE).ticks(EPIC, 0, n))


async def tick_loop(ticks: list[Tick], recorder: TickRecorder | None) -> float:
    """Seconds for the per-tick work over every tick (recording on when ``recorder``)."""
    settings = Settings()
    guard = TickGuard(settings.guard_params(0.0001))
    history = BarHistory(0.0001, settings.condition_params())
    checkpoint = trio.lowlevel.checkpoint
    add = recorder.add if recorder is not None else None
    start = time.perf_counter()
    for i, t in enumerate(ticks):
        if guard.check(t.ts, t.bid, t.ask, None) is None:
            if add is not None:
                add(t)
            history.add(t.ts, t.bid, t.ask)
        if i % YIELD_EVERY == 0:
            await checkpoint()
    return time.perf_counter() - start


async def one_run(ticks: list[Tick], record: bool, folder: Path) -> tuple[float, int]:
    """Seconds of the tick loop, and the ticks still waiting for the writer at its end."""
    if not record:
        return await tick_loop(ticks, None), 0
    recorder = TickRecorder(folder, 30, flush_s=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        elapsed = await tick_loop(ticks, recorder)
        behind = recorder.statistics().pending
        nursery.cancel_scope.cancel()  # the rest is flushed after the clock stopped
    assert recorder.recorded == len(ticks) and recorder.dropped == 0
    return elapsed, behind


async def paced(ticks: list[Tick], record: bool, folder: Path, rate: float) -> list[float]:
    """Per-tick delay (s) from due time to processed, ticks delivered at ``rate``/s."""
    settings = Settings()
    guard = TickGuard(settings.guard_params(0.0001))
    history = BarHistory(0.0001, settings.condition_params())
    recorder = TickRecorder(folder, 30, flush_s=0.5) if record else None
    delays = []
    async with trio.open_nursery() as nursery:
        if recorder is not None:
            await nursery.start(recorder.run)
        start = trio.current_time()
        for i, t in enumerate(ticks):
            due = start + i / rate
            await trio.sleep_until(due)
            if guard.check(t.ts, t.bid, t.ask, None) is None:
                if recorder is not None:
                    recorder.add(t)
                history.add(t.ts, t.bid, t.ask)
            delays.append(trio.current_time() - due)
        nursery.cancel_scope.cancel()
    return delays


def counterfactual_run(folder: Path, trades: int) -> tuple[float, float, int]:
    """(seconds to load the recording, seconds to replay, trades replayed)."""
    import random

    from traild.adapters.recorder import Recordings
    from traild.core.calculator import FIXED, CalculatedStages
    from traild.core.messages import Direction, TradeRecord, TradeStatus
    from traild.reporting.counterfactual import Replayer

    cols = load_ticks(SOURCE)
    DayFiles(folder, 30).write(columns_of(list(cols.ticks(EPIC))))
    settings = Settings()
    stages = CalculatedStages(settings.stage_config(EPIC, False), FIXED, "disabled").to_json()
    rng = random.Random(1)
    records = []
    for i in range(trades):
        k = rng.randrange(len(cols) - 50_000)
        buy = rng.random() < 0.5
        entry = float(cols.ask[k] if buy else cols.bid[k])
        stop = entry - 0.002 if buy else entry + 0.002
        ts = next(cols.ticks(EPIC, k, k + 1)).ts
        records.append(TradeRecord(
            f"B{i}", EPIC, Direction.BUY if buy else Direction.SELL, entry_price=entry,
            initial_sl_price=stop, limit_price=entry + (0.005 if buy else -0.005),
            status=TradeStatus.CLOSED, opened_at=ts, closed_at=ts, pnl_pips=0.0,
            calculated_stages=stages, trailing_calculation_method=FIXED,
        ))  # fmt: skip
    replayer = Replayer(settings.calculator_params(), settings.ladder_policy(),
                        settings.stage_config, settings.instrument_table())  # fmt: skip
    start = time.perf_counter()
    recordings = Recordings(folder)
    recordings.columns(EPIC)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    done = replayer.run(records, recordings)
    return loaded, time.perf_counter() - start - loaded, len(done.trades)


def add_only(ticks: list[Tick], folder: Path) -> float:
    recorder = TickRecorder(folder, 30, max_pending=len(ticks) + 1)
    add = recorder.add
    start = time.perf_counter()
    for t in ticks:
        add(t)
    return time.perf_counter() - start


def writer(ticks: list[Tick], folder: Path) -> tuple[float, int]:
    files = DayFiles(folder, 30)
    start = time.perf_counter()
    for i in range(0, len(ticks), 20_000):
        files.write(columns_of(ticks[i : i + 20_000]))
    elapsed = time.perf_counter() - start
    size = sum(p.stat().st_size for p in folder.rglob("*.csv.gz"))
    return elapsed, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--trades", type=int, default=500)
    args = parser.parse_args()
    logger.remove()
    ticks = load(args.ticks)
    n = len(ticks)
    off, on, behind, adds, writes, sizes = [], [], [], [], [], []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            off.append(trio.run(one_run, ticks, False, folder / "off")[0])
            elapsed, pending = trio.run(one_run, ticks, True, folder / f"on{run}")
            on.append(elapsed)
            behind.append(pending)
            adds.append(add_only(ticks, folder / "add"))
            elapsed, size = writer(ticks, folder / f"w{run}")
            writes.append(elapsed)
            sizes.append(size)
    ns = 1e9 / n
    m_off, m_on = statistics.median(off) * ns, statistics.median(on) * ns
    print(f"{n:,} real EURUSD ticks, median of {args.runs} runs")
    print(f"  tick loop (guard + bar history), recorder off: {m_off:8.0f} ns/tick")
    print(f"  tick loop, recorder on (writer busy)        : {m_on:8.0f} ns/tick")
    print(f"  difference                                  : {m_on - m_off:+8.0f} ns/tick")
    print(f"  ticks not yet written when the loop ended   : {statistics.median(behind):8.0f}")
    print(f"  TickRecorder.add alone                      : {statistics.median(adds) * ns:8.0f} ns")
    rate = n / statistics.median(writes)
    print(f"  writer (format + gzip + append, own process): {rate:8,.0f} ticks/s")
    per_tick = statistics.median(sizes) / n
    print(f"  on disk                                     : {per_tick:8.1f} B/tick")
    live = ticks[: int(10 * args.rate)]
    print(f"paced at {args.rate:g} ticks/s ({len(live):,} ticks), delay due -> processed, us:")
    for record in (False, True):
        rows = []
        for run in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                d = sorted(trio.run(paced, live, record, Path(tmp) / str(run), args.rate))
                rows.append((d[len(d) // 2], d[int(len(d) * 0.99)], d[-1]))
        p50, p99, top = (statistics.median(r[k] for r in rows) * 1e6 for k in range(3))
        label = "on " if record else "off"
        print(f"  recorder {label}: p50 {p50:7.0f}  p99 {p99:7.0f}  max {top:7.0f}")
    with tempfile.TemporaryDirectory() as tmp:
        loaded, replayed, n_cf = counterfactual_run(Path(tmp), args.trades)
    print(
        f"counterfactuals: 15 days recorded ({len(load_ticks(SOURCE)):,} ticks) load in "
        f"{loaded:.2f} s; {n_cf} trades x 4 replays in {replayed:.2f} s"
    )


if __name__ == "__main__":
    main()
