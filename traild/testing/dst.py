"""Deterministic simulation testing of the runtime (the FoundationDB / TigerBeetle VOPR idea).

``run_seed(seed)`` plays one seed's story (``dst_schedule``) against the REAL runtime — the
Supervisor, a non-lockstep Router (latest-wins mailboxes coalesce bursts), the Gateway — over a
``FakeBroker`` with latency and faults and a ``SimStore`` whose non-durable writes a crash
loses, all on ``trio.testing.MockClock(autojump_threshold=0)`` with trio's scheduling seeded, so
a seed replays exactly. A crash cancels the runtime's nursery (and fences it: nothing it does
after that counts), then a new Gateway/Router/Supervisor starts over the same store and broker
while the market goes on. Invariants (``dst_check``) are checked after every step. The world
of one seed is ``dst_world``; this module runs seeds and is the command.

    python -m traild.testing.dst --seeds 2000          # a soak; exits 1 on any violation
    python -m traild.testing.dst --seed 1234 --verbose # replay one seed
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio
import trio.testing
from loguru import logger

from traild.testing.dst_check import NAMES, SpinMeter
from traild.testing.dst_schedule import Knobs
from traild.testing.dst_world import FAULT_KINDS, SeedResult, World

__all__ = ["Knobs", "SeedResult", "main", "run_many", "run_seed"]


def run_seed(seed: int, knobs: Knobs | None = None, **overrides: Any) -> SeedResult:
    """Run one seed to the end of its settle phase and check every invariant."""
    k = dataclasses.replace(knobs or Knobs(), **overrides)
    _seed_trio(seed)
    world = World(seed, k)
    clock = trio.testing.MockClock(autojump_threshold=0)
    meter = SpinMeter(clock, world.on_spin)
    logger.disable("traild")
    try:
        trio.run(world.main, clock=clock, instruments=[meter])
    finally:
        logger.enable("traild")
    return world.result(meter)


def _seed_trio(seed: int) -> None:
    """Make trio's scheduler a function of the seed (what trio does under Hypothesis): the
    runnable batch is sorted by spawn order, then shuffled with trio's own seeded Random."""
    from trio._core import _run

    setattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 (a Final in trio)
    _run._r.seed(seed)


# -- the command ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m traild.testing.dst", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, default=None, help="run (replay) this one seed")
    parser.add_argument("--trades", type=int, default=Knobs().trades)
    parser.add_argument("--ticks", type=int, default=Knobs().ticks)
    parser.add_argument("--verbose", action="store_true", help="every seed, with histories")
    parser.add_argument(
        "--no-journal",
        action="store_true",
        help="model a daemon without its write-ahead journal (writes queued at a crash are lost)",
    )
    args = parser.parse_args(argv)
    knobs = Knobs(trades=args.trades, ticks=args.ticks, journal=not args.no_journal)
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    return run_many(seeds, knobs, args.verbose or args.seed is not None, print)


def run_many(seeds: Any, knobs: Knobs, verbose: bool, out: Callable[[str], None]) -> int:
    """Run ``seeds``; print failures (each with its replay line), the fault mix and a summary."""
    started = time.perf_counter()
    mix: Counter[str] = Counter()
    by_invariant: Counter[str] = Counter()
    failed: list[SeedResult] = []
    n = 0
    for seed in seeds:
        result = run_seed(seed, knobs)
        n += 1
        mix.update(result.faults)
        if verbose:
            out(
                f"seed {seed}: {'ok' if result.ok else 'FAIL'} digest {result.digest} "
                f"stats {result.stats} faults {result.faults}"
            )
            for line in result.detail:
                out("  " + line)
        if not result.ok:
            failed.append(result)
            by_invariant.update({v.invariant for v in result.violations})
            for v in result.violations:
                out(f"seed {seed} {v}")
            out(f"  replay: {result.replay()}")
    elapsed = time.perf_counter() - started
    out("fault mix: " + ", ".join(f"{k}={mix.get(k, 0)}" for k in FAULT_KINDS))
    for inv, count in sorted(by_invariant.items()):
        out(f"invariant ({inv}) {NAMES[inv]}: {count} seeds")
    out(f"{n} seeds, {len(failed)} with violations, {elapsed:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
