"""What one simulation seed plays: trades, tick paths, storm/calm phases, crashes, faults.

Everything is drawn up front from the seed's ``random.Random`` so a seed is one fixed story;
the runtime's reactions to it are deterministic too (trio's MockClock, seeded scheduling).

* Tick paths: per epic a random walk in integer ticks with a drift (so many trades reach +10,
  +20, +40 pips), random gaps, long quiet gaps, and bursts published without a checkpoint in
  between (they pile up in the router's latest-wins mailbox and are coalesced).
* Phases alternate: a *storm* (broker faults on, crashes, stops changed at the broker) and a
  *calm* (no fault of any kind). The run ends with a settle phase: a calm with the market held
  at its last quote. Calm phases are what invariants (b) and (c) are checked against.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from traild.core.instruments import InstrumentTable
from traild.core.messages import Direction, Tick
from traild.testing.fake_book import T0 as T0  # the scenarios start here
from traild.testing.fake_book import FaultRates, LatencyModel

EPICS = {"CS.D.EURUSD.MINI.IP": 1.10000, "CS.D.USDJPY.MINI.IP": 150.000}


@dataclass(frozen=True, slots=True)
class Knobs:
    """The size and shape of a seed (defaults: small and fast, for thousands of seeds)."""

    trades: int = 4
    ticks: int = 120
    max_crashes: int = 2
    faults: bool = True  # False: a fault-free run (every phase calm)
    retry_max: float = 4.0  # the gateway's longest back-off (config; 30 s by default)
    max_latency: float = 3.0
    mean_gap: float = 0.7  # seconds between ticks
    # The daemon's write-ahead journal keeps what a crash would lose from the store's queue
    # (applied at the next start); False models a daemon without it (writes lost at a crash).
    journal: bool = True


@dataclass(frozen=True, slots=True)
class TradeSpec:
    deal_id: str
    epic: str
    direction: Direction
    entry: float
    stop: float
    limit: float | None


@dataclass(frozen=True, slots=True)
class Phase:
    start: float
    end: float
    storm: bool


@dataclass(frozen=True, slots=True)
class Crash:
    t: float
    downtime: float
    fail_reads: int  # position reads failing right after the restart (the /positions outage)
    after_apply: bool  # not at ``t`` but at the first amendment the broker applies after it


@dataclass(frozen=True, slots=True)
class External:
    t: float
    deal_id: str
    remove: bool
    loosen_pips: float


@dataclass(frozen=True, slots=True)
class Scenario:
    trades: tuple[TradeSpec, ...]
    steps: tuple[tuple[float, tuple[Tick, ...]], ...]  # (time, ticks published back to back)
    phases: tuple[Phase, ...]
    crashes: tuple[Crash, ...]
    externals: tuple[External, ...]
    latency: LatencyModel
    faults: FaultRates
    min_stop: dict[str, float]
    store_lag: float  # mean delay of a non-durable write (seconds)
    feed_delay: float  # how long after the broker traild sees a quote (its stream's latency)
    calm_needed: float  # W: how long a calm must last for (b) and (c) to be owed
    settle_at: float  # the settle phase starts here (market held at its last quote)
    end: float


def calm_needed(k: Knobs) -> float:
    """W: two back-offs, three round trips and a couple of tick gaps — enough for a correct
    runtime to place (or restore) any stop the broker accepts, however the storm left it."""
    return 2 * k.retry_max + 3 * k.max_latency + 6 * k.mean_gap + 2.0


def make_scenario(rng: random.Random, k: Knobs, table: InstrumentTable) -> Scenario:
    epics = list(EPICS)[: rng.choice((1, 2, 2))]
    latency = LatencyModel(
        fixed=rng.uniform(0.02, 0.4),
        mean=rng.uniform(0.05, 0.6),
        p_fixed=rng.uniform(0.0, 0.6),
        p_tail=rng.uniform(0.0, 0.1),
        max_latency=k.max_latency,
    )
    faults = FaultRates(
        refuse=rng.choice((0.0, 0.1, 0.3, 0.5)),
        timeout=rng.choice((0.0, 0.05, 0.15)),
        timeout_applied=rng.random(),
        unavailable=rng.choice((0.0, 0.05, 0.15)),
        rate_limit_burst=rng.choice((0.0, 0.02, 0.08)),
        burst_length=rng.randint(1, 5),
        read_failure=rng.choice((0.0, 0.2, 0.5)),
    )
    min_stop = {e: rng.choice((0.0, 0.5, 1.0, 2.0, 3.0, 5.0)) for e in epics}
    store_lag = rng.choice((0.05, 0.2, 0.8))
    feed_delay = rng.choice((0.0, 0.0, 0.05, 0.2, 0.6))
    steps, quotes = _ticks(rng, k, table, epics)
    trades = tuple(_trade(rng, i, table, quotes) for i in range(k.trades))
    w = calm_needed(k)
    settle_at = steps[-1][0] + 1.0
    phases = _phases(rng, k, w, settle_at)
    storms = [p for p in phases if p.storm]
    crashes = _crashes(rng, k, storms)
    externals = _externals(rng, storms, trades)
    settle = _settle(steps, quotes, settle_at, w)
    return Scenario(
        trades,
        tuple(steps + settle),
        tuple(phases),
        crashes,
        externals,
        latency,
        faults,
        min_stop,
        store_lag,
        feed_delay,
        w,
        settle_at,
        settle[-1][0] + 1.0,
    )


def _ticks(
    rng: random.Random, k: Knobs, table: InstrumentTable, epics: list[str]
) -> tuple[list[tuple[float, tuple[Tick, ...]]], dict[str, Tick]]:
    """Random walks (integer ticks, 10 ticks a pip for both epics) with drift, bursts (some
    with a spike out and back) and sudden jumps that stay (a retrace onto a trade's floor)."""
    price = {e: table.resolve(e).to_ticks(EPICS[e]) for e in epics}
    drift = {e: rng.uniform(-0.45, 0.45) for e in epics}  # pips per tick
    sigma = {e: rng.uniform(0.4, 1.6) for e in epics}
    spread = {e: rng.randint(5, 15) for e in epics}
    first = {e: _quote(table, e, price[e], spread[e], T0) for e in epics}
    steps: list[tuple[float, tuple[Tick, ...]]] = [(0.0, tuple(first.values()))]
    t, n = 0.5, 0
    while n < k.ticks:
        r = rng.random()
        t += rng.uniform(2.0, 8.0) if r < 0.05 else rng.expovariate(1.0 / k.mean_gap)
        size = rng.randint(2, 8) if rng.random() < 0.12 else 1
        spike = _spike(rng, size)
        burst: list[Tick] = []
        for j in range(size):
            e = rng.choice(epics) if not spike or j == 0 else burst[0].epic
            price[e] += round(rng.gauss(drift[e], sigma[e]) * 10)
            if rng.random() < 0.03:
                price[e] += round(rng.uniform(5.0, 15.0) * rng.choice((-10, 10)))
            ts = T0 + timedelta(seconds=t, microseconds=j)
            bid = price[e] + spike[j] if spike else price[e]
            burst.append(_quote(table, e, bid, spread[e] + rng.randint(0, 4), ts))
        steps.append((t, tuple(burst)))
        n += size
    return steps, first


def _spike(rng: random.Random, size: int) -> list[int]:
    """A news spike inside a burst: out and back by 8-25 pips (ticks offsets), or nothing.
    The mailbox coalesces it into one quote with the spike's best bid and best ask."""
    if size < 3 or rng.random() < 0.6:
        return []
    top = rng.uniform(8.0, 25.0) * rng.choice((-1, 1)) * 10
    peak = rng.randint(1, size - 2)
    return [round(top * (1 - abs(j - peak) / max(peak, size - 1 - peak))) for j in range(size)]


def _quote(table: InstrumentTable, epic: str, bid: int, spread: int, ts: datetime) -> Tick:
    p = table.resolve(epic).to_price
    return Tick(epic, ts, p(bid), p(bid + spread))


def _trade(
    rng: random.Random, i: int, table: InstrumentTable, quotes: dict[str, Tick]
) -> TradeSpec:
    epic = rng.choice(sorted(quotes))
    inst = table.resolve(epic)
    direction = rng.choice((Direction.BUY, Direction.SELL))
    s = direction.sign
    q = quotes[epic]
    entry = inst.to_ticks(q.ask if s > 0 else q.bid)
    stop = entry - s * rng.randint(80, 250)
    limit = None if rng.random() < 0.7 else entry + s * rng.randint(300, 800)
    p = inst.to_price
    return TradeSpec(
        f"DEAL{i + 1:03d}", epic, direction, p(entry), p(stop), None if limit is None else p(limit)
    )


def _phases(rng: random.Random, k: Knobs, w: float, settle_at: float) -> list[Phase]:
    phases: list[Phase] = []
    t, storm = 0.0, k.faults and rng.random() < 0.7
    while t < settle_at:
        length = rng.uniform(5.0, 35.0) if storm else rng.uniform(w, w + 20.0)
        end = min(t + length, settle_at)
        phases.append(Phase(t, end, storm))
        t, storm = end, k.faults and not storm
    phases.append(Phase(settle_at, settle_at + w + 5.0, False))
    return phases


def _crashes(rng: random.Random, k: Knobs, storms: list[Phase]) -> tuple[Crash, ...]:
    if not storms:
        return ()
    crashes = []
    for _ in range(rng.randint(0, k.max_crashes)):
        p = rng.choice(storms)
        if p.end - p.start < 1.0:
            continue
        downtime = k.max_latency + rng.uniform(0.2, 3.0)  # the dead process's requests land
        fail_reads = rng.choice((0, 0, 1, 2))
        at = rng.uniform(p.start + 0.5, p.end)
        crashes.append(Crash(at, downtime, fail_reads, rng.random() < 0.5))
    return tuple(sorted(crashes, key=lambda c: c.t))


def _externals(
    rng: random.Random, storms: list[Phase], trades: tuple[TradeSpec, ...]
) -> tuple[External, ...]:
    out = []
    for p in storms:
        for _ in range(rng.choice((0, 0, 0, 1, 2))):
            deal = rng.choice(trades).deal_id
            t = rng.uniform(p.start, p.end)
            out.append(External(t, deal, rng.random() < 0.3, rng.uniform(2.0, 15.0)))
    return tuple(sorted(out, key=lambda e: e.t))


def _settle(
    path: list[tuple[float, tuple[Tick, ...]]], first: dict[str, Tick], at: float, w: float
) -> list[tuple[float, tuple[Tick, ...]]]:
    """The market held at its last quote, re-sent every second through the settle phase."""
    latest = dict(first)
    for _, ticks in path:
        latest.update({t.epic: t for t in ticks})
    steps = []
    t = at
    while t < at + w + 5.0:
        ts = T0 + timedelta(seconds=t)
        steps.append((t, tuple(Tick(q.epic, ts, q.bid, q.ask) for q in latest.values())))
        t += 1.0
    return steps
