"""Core benchmark: Ladder.on_tick updates per second on real ticks.

Data: the OANDA EURUSD ticks of 2014-05-01..15 (532,903 quotes) from ``../shared/data/fx``
beside the repository, converted to integer ticks *before* timing, so parsing is not measured.

Scenarios (each the median of ``--runs`` runs, one core, no other work in the loop):

* ``baseline``  the same loop calling a no-op function: the floor any Python per-tick
                call can reach on this machine;
* ``single``    one BUY walking the whole file with the default ladder. Its amendments are
                left pending (never confirmed), so the confirmed stop stays 1000 pips away
                and it never exits, yet every rung and the stage-3 trail are computed;
* ``many``      ``--trades`` trades updated on every tick (entries staggered by
                ``--stagger`` ticks, alternating BUY/SELL, stop 20 pips); every MoveStop is
                confirmed at once and a trade that exits is replaced by a new one on the
                next tick, so the book stays full.

Run:  .venv/bin/python bench/bench_core.py [--runs 5] [--ticks 20000] [--trades 1000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from traild.adapters.tickfiles import load_ticks  # noqa: E402
from traild.core.calculator import StageConfig  # noqa: E402
from traild.core.instruments import Instrument, InstrumentTable  # noqa: E402
from traild.core.ladder import Exit, Ladder, LadderPlan, LadderPolicy  # noqa: E402
from traild.core.messages import Direction, MoveStop  # noqa: E402

DEFAULT_FILE = (
    REPO_ROOT / ".." / "shared" / "data" / "fx" / "ticks"
    / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
)  # fmt: skip
REGULAR = StageConfig(
    early_be_trigger=15,
    early_be_buffer=2,
    stage1_trigger=20,
    stage1_lock=8,
    stage2_trigger=30,
    stage2_lock=15,
    stage3_trigger=40,
    stage3_atr_multiplier=1.0,
    stage3_min_distance=10,
)


def integer_ticks(path: Path, inst: Instrument) -> tuple[list[int], list[int]]:
    """Bid and ask columns as Python ints of ticks (exactly Instrument.to_ticks)."""
    cols = load_ticks(path)
    scale = float(1 / inst.tick_size)
    bids = np.rint(cols.bid * scale).astype(np.int64).tolist()
    asks = np.rint(cols.ask * scale).astype(np.int64).tolist()
    for i in range(0, len(bids), max(1, len(bids) // 1000)):  # spot-check the conversion
        assert bids[i] == inst.to_ticks(float(cols.bid[i])), i
    return bids, asks


def run_baseline(bids: list[int], asks: list[int]) -> int:
    def on_tick(bid: int, ask: int) -> None:
        return None

    n = 0
    for bid, ask in zip(bids, asks, strict=True):
        if on_tick(bid, ask) is not None:
            n += 1
    return len(bids)


def run_single(plan: LadderPlan, bids: list[int], asks: list[int]) -> tuple[int, int]:
    """One BUY from the first ask; amendments stay pending, so it walks the whole file."""
    ladder = Ladder(plan, Direction.BUY, asks[0], asks[0] - 10_000)
    on_tick = ladder.on_tick
    moves = 0
    for bid, ask in zip(bids, asks, strict=True):
        if on_tick(bid, ask) is not None:
            moves += 1
    assert not ladder.closed
    return len(bids), moves


def run_many(
    plan: LadderPlan, bids: list[int], asks: list[int], trades: int, stagger: int
) -> tuple[int, int, int]:
    """``trades`` live trades per tick, confirmed at once, replaced when they exit."""
    book: list[Ladder | None] = [None] * trades
    updates = moves = exits = 0
    for i, (bid, ask) in enumerate(zip(bids, asks, strict=True)):
        for k in range(trades):
            ladder = book[k]
            if ladder is None:
                if i >= k * stagger:
                    book[k] = _open(plan, k + exits, bid, ask)
                continue
            event = ladder.on_tick(bid, ask)
            updates += 1
            if event is None:
                continue
            if type(event) is MoveStop:
                ladder.confirm(event.level)
                moves += 1
            else:
                assert type(event) is Exit
                book[k] = None if i + 1 >= len(bids) else _open(plan, k + exits, bid, ask)
                exits += 1
    return updates, moves, exits


def _open(plan: LadderPlan, n: int, bid: int, ask: int) -> Ladder:
    if n % 2 == 0:
        return Ladder(plan, Direction.BUY, ask, ask - 200)
    return Ladder(plan, Direction.SELL, bid, bid + 200)


def median_rate(label: str, runs: int, fn: Callable[[], tuple[int, ...] | int]) -> float:
    rates, extra = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        count = out if isinstance(out, int) else out[0]
        extra = out
        rates.append(count / dt)
    med = statistics.median(rates)
    spread = f"min {min(rates) / 1e6:.2f} max {max(rates) / 1e6:.2f}"
    print(f"{label:<10} {med / 1e6:7.2f} M updates/s  (median of {runs}; {spread})  {extra}")
    return med


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ticks", type=int, default=20_000, help="ticks for the many-trade run")
    ap.add_argument("--trades", type=int, default=1000)
    ap.add_argument("--stagger", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile the many-trade run")
    args = ap.parse_args(argv)

    inst = InstrumentTable().resolve("EURUSD")
    plan = LadderPlan.compile(REGULAR, inst, LadderPolicy())
    t0 = time.perf_counter()
    bids, asks = integer_ticks(args.file.resolve(), inst)
    print(f"{len(bids):,} ticks from {args.file.name} in {time.perf_counter() - t0:.2f} s")
    print(f"python {sys.version.split()[0]}; many = {args.trades} trades x {args.ticks:,} ticks")

    median_rate("baseline", args.runs, lambda: run_baseline(bids, asks))
    median_rate("single", args.runs, lambda: run_single(plan, bids, asks))
    sb, sa = bids[: args.ticks], asks[: args.ticks]
    median_rate("many", args.runs, lambda: run_many(plan, sb, sa, args.trades, args.stagger))
    if args.profile:
        n = max(1, args.ticks // 4)
        profile("single", run_single, plan, bids, asks)
        profile("many", run_many, plan, sb[:n], sa[:n], args.trades, args.stagger)
    return 0


def profile(label: str, fn: Callable[..., object], *args: object) -> None:
    """Where the time goes (cProfile inflates per-call costs; read the shares, not the times)."""
    prof = cProfile.Profile()
    prof.runcall(fn, *args)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(6)
    body = out.getvalue().split("\n\n", 1)[-1].strip()
    print(f"-- profile: {label}\n{body}\n")


if __name__ == "__main__":
    sys.exit(main())
