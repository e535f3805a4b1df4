"""Backtest throughput: event-driven core vs vectorised kernel vs a plain per-tick Python loop.

    .venv/bin/python bench/bench_backtest.py [--trades 1000] [--runs 7] [--event-runs 3]

1. Trade-ticks per second (ticks from each trade's entry to its exit) for N random trades over
   the OANDA EURUSD ticks, per variant, median of several runs, for the event-driven path
   (Ladder + run_trade), the fast path (kernel), and a plain Python loop over the same integer
   ticks of the same trades (``if x <= stop``/``x >= limit``/new best: the floor of any
   per-tick Python implementation). Fast path and loop take turns in every run, so the ratio
   holds on a busy machine. The kernel's results are checked against the core's first.
2. Wall time of a whole ``traild backtest`` of 3,000 random trades on two days of those ticks,
   as a subprocess (start-up, loading, all variants, reports and charts), median of 3.
3. ``--bars``: wall time and peak RSS of a whole ``traild backtest --bars`` over a year of
   EURUSD M1 bid bars (HistData 2017, ~371,000 bars), 10,000 random trades, 3 variants, as a
   subprocess, median of 3 (``--bars-runs``; 0 skips it).
4. ``--whole [--sizes 300,3000,30000] [--whole-runs 3]``: whole processes in CPU seconds (user +
   sys of the child, medians, taking turns), per shared file (EURUSD OANDA, GBPJPY Dukascopy,
   each alone) and number of random trades, each figure with its baselines from the same run:
   ``traild backtest`` (3 variants, every output, with a warm tick cache in a temporary
   directory, and with ``--no-cache``) against two standalone baseline scripts, whole processes
   too: ``baselines/plain_loop.py`` (the csv module, a plain Python loop per trade) and
   ``baselines/numpy_trail.py`` (pandas, a vectorised trail per trade). They trail the same
   entries, traild's own random entries (seed 1) written out as a signals CSV (fill time,
   direction, stop and limit in pips), at 3 fixed distances (as traild's 3 variants), and must
   agree with each other to the tick. Also the bench's in-memory per-tick loop (x 3) and the
   event-driven path's CPU per tick over that loop's.
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traild.backtest.engine import BacktestRequest, Context, plan_trades, prepare  # noqa: E402
from traild.backtest.kernel import KernelTrade, PathResult  # noqa: E402
from traild.backtest.markets import Market  # noqa: E402
from traild.backtest.paths import run_trades  # noqa: E402
from traild.backtest.signals import RandomDefaults  # noqa: E402
from traild.config.settings import Settings  # noqa: E402

TICKS = ROOT / ".." / "shared" / "data" / "fx" / "ticks"
OANDA = TICKS / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
TWO_DAYS = ("2014-05-06", "2014-05-07")
BASELINES = Path(__file__).resolve().parent / "baselines"
GBPJPY = TICKS / "GBPJPY_dukascopy_ticks_2012-12-02_2012-12-14.csv.gz"
YEAR_BARS = (
    ROOT / ".." / "shared" / "data" / "fx" / "bars_m1" / "EURUSD_histdata_m1_bid_2017.csv.gz"
)


def _median_time(fn: Callable[[], object], runs: int) -> float:
    return _median_times([fn], runs)[0]


def _median_times(fns: Sequence[Callable[[], object]], runs: int) -> list[float]:
    """Median time of each function; the functions take turns in every run, so a busy
    machine slows them alike and their ratio stays meaningful."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def _plain_loop(market: Market, jobs: Sequence[KernelTrade], results: Sequence[PathResult]) -> None:
    """Per-tick Python over the same ticks: exit checks and the running best, nothing more."""
    x = market.both_sides().tolist()
    n = len(market)
    for job, result in zip(jobs, results, strict=True):
        base = 0 if job.direction.sign > 0 else n
        s = job.direction.sign
        stop, limit, best = (
            s * job.stop,
            (1 << 62) if job.limit is None else s * job.limit,
            -(1 << 62),
        )
        for i in range(base + job.start, base + result.exit_idx + 1):
            v = x[i]
            if v <= stop or v >= limit:
                break
            if v > best:
                best = v


def bench_paths(ctx: Context, runs: int, event_runs: int) -> None:
    market = ctx.markets[0]
    print(f"{len(ctx.trades)} random trades over {OANDA.name} ({len(market):,} ticks)\n")
    print(
        f"{'variant':<14}{'trade-ticks':>13}{'event/s':>14}{'fast/s':>16}{'loop/s':>14}"
        f"{'fast/loop':>11}{'fast/event':>12}"
    )
    for variant in ctx.variants:
        jobs, _, _ = plan_trades(ctx, variant, market, ctx.trades)
        fast, paths = run_trades(market, jobs, "fast")
        event, _ = run_trades(market, jobs, "event")
        assert fast == event, "kernel and core disagree"
        ticks = sum(r.exit_idx - j.start + 1 for j, r in zip(jobs, fast, strict=True))
        t_fast, t_loop = _median_times(
            [partial(run_trades, market, jobs, "fast"), partial(_plain_loop, market, jobs, fast)],
            runs,
        )
        t_event = _median_time(partial(run_trades, market, jobs, "event"), event_runs)
        print(
            f"{variant.name:<14}{ticks:>13,}{ticks / t_event:>14,.0f}{ticks / t_fast:>16,.0f}"
            f"{ticks / t_loop:>14,.0f}{t_loop / t_fast:>10.1f}x{t_event / t_fast:>11.0f}x"
            f"   ({paths.count('event')} replayed by the core)"
        )


def _two_day_file(directory: Path) -> Path:
    path = directory / "EURUSD_oanda_ticks_two_days.csv.gz"
    with gzip.open(OANDA, "rt") as src, gzip.open(path, "wt") as dst:
        dst.write(src.readline())
        dst.writelines(line for line in src if line.startswith(TWO_DAYS))
    return path


def bench_cli(trades: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ticks = _two_day_file(Path(tmp))
        config = Path(tmp) / "traild.toml"
        config.write_text("")
        cmd = [
            sys.executable,
            "-m",
            "traild",
            "backtest",
            "--ticks",
            str(ticks),
            "--random",
            str(trades),
            "--seed",
            "1",
            "--out",
            str(Path(tmp) / "out"),
            "--config",
            str(config),
        ]
        with gzip.open(ticks, "rt") as fh:
            rows = sum(1 for _ in fh) - 1

        def once() -> None:
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)

        wall = _median_time(once, runs)
    print(
        f"\ntraild backtest --random {trades} (3 variants) on {TWO_DAYS[0]}..{TWO_DAYS[1]}"
        f" ({rows:,} ticks): {wall:.2f} s wall, median of {runs} (subprocess, all outputs)"
    )


def _trailing_loop(market: Market, jobs: Sequence[KernelTrade]) -> int:
    """The bench's own per-tick trailing stop over each trade's ticks; returns ticks seen."""
    x = market.both_sides().tolist()
    n, seen = len(market), 0
    for job in jobs:
        s = job.direction.sign
        base = 0 if s > 0 else n
        stop = s * job.stop
        limit = (1 << 62) if job.limit is None else s * job.limit
        best = -(1 << 62)
        distance = 100  # ticks (10 pips on both instruments here)
        i = base + job.start
        end = base + n
        while i < end:
            v = x[i]
            i += 1
            if v <= stop or v >= limit:
                break
            if v > best:
                best = v
                if best - distance > stop:
                    stop = best - distance
        seen += i - base - job.start
    return seen


def _child_cpu(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """CPU seconds (user + sys) of one subprocess run: on a shared machine CPU, not wall."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def write_signals(ctx: Context, path: Path) -> None:
    """traild's resolved entries as a signals CSV for the baselines: the fill tick's time in
    the tick files' own format (``2014-05-01T00:00:00.292Z``), the direction, and the stop and
    limit distances in pips."""
    lines = ["ts_utc,epic,direction,stop_pips,limit_pips"]
    for t in ctx.trades:
        inst = ctx.markets[t.market].instrument
        pips_per_tick = float(inst.tick_size / inst.pip_size)
        stop = abs(t.entry - t.stop) * pips_per_tick
        limit = "" if t.limit is None else f"{abs(t.limit - t.entry) * pips_per_tick:.6g}"
        ts = datetime.fromtimestamp(t.entry_ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        lines.append(f"{ts[:-3]}Z,{t.epic},{t.direction.value},{stop:.6g},{limit}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _in_memory_loop(ctx: Context, runs: int) -> tuple[float, int, float]:
    """CPU seconds (median) and ticks of the bench's in-memory loop, one variant; and the
    event-driven path's CPU seconds per tick over the same trades, as a multiple of the loop's."""
    variant = ctx.variants[0]
    plans = [
        (m, plan_trades(ctx, variant, m, [t for t in ctx.trades if t.market == k])[0])
        for k, m in enumerate(ctx.markets)
    ]
    loops, ticks = [], 0
    for _ in range(runs):
        start = time.process_time()
        ticks = sum(_trailing_loop(m, jobs) for m, jobs in plans)
        loops.append(time.process_time() - start)
    loop = statistics.median(loops)
    start = time.process_time()
    event_ticks = 0
    for m, jobs in plans:
        results, _ = run_trades(m, jobs, "event")
        event_ticks += sum(r.exit_idx - j.start + 1 for j, r in zip(jobs, results, strict=True))
    event = time.process_time() - start
    return loop, ticks, (event / event_ticks) / (loop / ticks)


def bench_whole(trades: int, runs: int, files: Sequence[str], label: str) -> None:
    """Whole processes on the same file and entries, in CPU seconds (user + sys, medians of
    ``runs``, taking turns so a busy machine slows them alike): ``traild backtest`` (3 variants,
    every output; with a warm tick cache, and with ``--no-cache``) against the two baseline
    scripts (3 trailing distances each), plus the in-memory loop of part 1's kind."""
    settings = Settings()
    b = settings.backtest
    defaults = RandomDefaults(
        b.stop_pips, b.limit_pips, b.scalp_stop_pips, b.scalp_limit_pips, b.scalp_share
    )
    ctx = prepare(settings, BacktestRequest(tuple(files), random=trades, seed=1), defaults)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = work / "traild.toml"
        config.write_text("")
        signals = work / "signals.csv"
        write_signals(ctx, signals)
        env = {**os.environ, "TRAILD_CACHE_DIR": str(work / "cache")}
        env.pop("TRAILD_NO_CACHE", None)
        cmd = [sys.executable, "-m", "traild", "backtest", "--ticks", *files]
        cmd += ["--random", str(trades), "--seed", "1", "--out", str(work / "out")]
        cmd += ["--config", str(config)]
        py = [sys.executable]
        plain = [*py, str(BASELINES / "plain_loop.py"), files[0], str(signals)]
        numpy = [*py, str(BASELINES / "numpy_trail.py"), files[0], str(signals)]
        _child_cpu(cmd, env)  # fills the tick cache
        # the two baselines trail alike: the same exits, to the tick and the price
        _child_cpu([*plain, str(work / "plain.csv")], env)
        _child_cpu([*numpy, str(work / "numpy.csv")], env)
        same = (work / "plain.csv").read_bytes() == (work / "numpy.csv").read_bytes()
        assert same, "the two baselines disagree"
        commands = {
            "traild": cmd,
            "no-cache": [*cmd, "--no-cache"],
            "plain": [*plain, str(work / "plain.csv")],
            "numpy": [*numpy, str(work / "numpy.csv")],
        }
        spent: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, command in commands.items():
                spent[name].append(_child_cpu(command, env))
    cpu = {name: statistics.median(values) for name, values in spent.items()}
    loop, ticks, event = _in_memory_loop(ctx, runs)
    t = cpu["traild"]
    print(
        f"{label:<7}{len(ctx.trades):>7,} {t:8.2f} {cpu['no-cache']:9.2f} {cpu['plain']:8.2f}"
        f" {cpu['numpy']:8.2f} {t / cpu['plain']:10.2f}x {t / cpu['numpy']:10.2f}x"
        f" {3 * loop:9.3f} {t / (3 * loop):9.1f}x {event:10.2f}x  ({ticks:,} ticks/variant)"
    )


WHOLE_HEADER = (
    f"{'file':<7}{'trades':>7} {'traild':>8} {'no-cache':>9} {'plain':>8} {'numpy':>8}"
    f" {'tr/plain':>11} {'tr/numpy':>11} {'3 loops':>9} {'tr/loops':>10} {'event/tick':>11}"
)


def bench_bars(trades: int, runs: int) -> None:
    """A whole ``traild backtest --bars`` process over a year of M1 bars: wall time, peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "traild.toml"
        config.write_text("")
        cmd = [
            *(sys.executable, "-m", "traild", "backtest", "--bars", str(YEAR_BARS)),
            *("--random", str(trades), "--seed", "1", "--out", str(Path(tmp) / "out")),
            *("--config", str(config)),
        ]
        walls, peaks, cpus = [], [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            proc = subprocess.run(
                ["/usr/bin/time", "-f", "%M %U %S", *cmd],
                cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            walls.append(time.perf_counter() - t0)
            rss, user, system = proc.stderr.strip().splitlines()[-1].split()
            peaks.append(int(rss) / 1024)
            cpus.append(float(user) + float(system))
    with gzip.open(YEAR_BARS, "rt") as fh:
        bars = sum(1 for _ in fh) - 1
    print(
        f"\ntraild backtest --bars (a year, {bars:,} M1 bars) --random {trades} (3 variants):"
        f" {statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU (user+sys,"
        f" all processes), peak RSS {statistics.median(peaks):.0f} MB,"
        f" median of {runs} (subprocess, all outputs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--event-runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--whole", action="store_true", help="run part 4 only")
    parser.add_argument("--sizes", default="300,3000,30000", help="--whole: trade counts")
    parser.add_argument("--whole-runs", type=int, default=3)
    parser.add_argument("--bars-runs", type=int, default=3)
    parser.add_argument("--only-bars", action="store_true", help="run part 3 only")
    args = parser.parse_args()
    if args.whole:
        print(
            f"whole-process CPU seconds (user+sys), median of {args.whole_runs}, each figure with"
            " its baselines from the same run:\n traild = traild backtest (3 variants, every"
            " output, warm tick cache); no-cache = the same with --no-cache; plain ="
            " bench/baselines/plain_loop.py, numpy = bench/baselines/numpy_trail.py (whole"
            " processes: read the file, trail the same entries at 3 distances, write the exits);"
            "\n 3 loops = the bench's in-memory per-tick loop (ticks already in memory) x 3"
            " variants; tr/X = traild / X; event/tick = the event-driven path's CPU per tick"
            " over the loop's (in-process)\n"
        )
        print(WHOLE_HEADER)
        for size in (int(n) for n in args.sizes.split(",")):
            for label, files in (("EURUSD", (str(OANDA),)), ("GBPJPY", (str(GBPJPY),))):
                bench_whole(size, args.whole_runs, files, label)
        return
    if args.only_bars:
        bench_bars(10_000, args.bars_runs)
        return
    ctx = prepare(Settings(), BacktestRequest((str(OANDA),), random=args.trades, seed=args.seed))
    bench_paths(ctx, args.runs, args.event_runs)
    bench_cli(3000, 3)
    if args.bars_runs:
        bench_bars(10_000, args.bars_runs)


if __name__ == "__main__":
    main()
