"""One seed's world for ``dst``: the runtime's lives (each a Gateway, Router and Supervisor that
a crash kills and a restart replaces), the harness that plays the scenario (``dst_schedule``)
against them over the ``FakeBroker`` and the ``SimStore``, and the verdict of the seed
(``SeedResult``: the invariants of ``dst_check``, the fault mix, the statistics, a digest).
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import math
import random
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import trio
import trio.testing

from traild.config.settings import Settings
from traild.core.instruments import InstrumentTable
from traild.core.messages import TradeRecord, TradeStatus
from traild.daemon.app import make_policy
from traild.runtime.gateway import Gateway
from traild.runtime.router import Router
from traild.runtime.supervisor import Supervisor
from traild.testing.dst_check import Checker, SpinMeter, Violation
from traild.testing.dst_schedule import Crash, Knobs, Phase, Scenario, make_scenario
from traild.testing.fake_book import T0
from traild.testing.fake_broker import FakeBroker
from traild.testing.fence import Fence
from traild.testing.memory_store import SimStore

FAULT_KINDS = (
    "refused_random",
    "refused_rule",
    "refused_not_found",
    "timeout_applied",
    "timeout_lost",
    "unavailable",
    "rate_limited",
    "read_failure",
    "external_loosen",
    "external_remove",
    "crashes",
    "journaled_writes",
    "lost_writes",
)


@dataclass
class SeedResult:
    """What one seed did: violations (first per invariant and deal), fault mix, stats."""

    seed: int
    knobs: Knobs
    violations: list[Violation]
    faults: dict[str, int]
    stats: dict[str, float]
    digest: str  # of every stop change and sl_price write: equal digests, equal runs
    detail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def replay(self) -> str:
        """The one line that replays this seed."""
        extra = "".join(
            f" --{f.name.replace('_', '-')} {getattr(self.knobs, f.name)}"
            for f in dataclasses.fields(Knobs)
            if getattr(self.knobs, f.name) != f.default and f.name in _CLI_KNOBS
        )
        if not self.knobs.journal:
            extra += " --no-journal"
        return f"python -m traild.testing.dst --seed {self.seed}{extra}"


_CLI_KNOBS = ("trades", "ticks")


@cache
def settings() -> Settings:
    return Settings()


class Life:
    """One runtime "process": Gateway, Router, Supervisor and their loops in one nursery."""

    def __init__(self, sim: World, number: int) -> None:
        self.sim, self.number = sim, number
        s, k = settings(), sim.k
        self.gateway = Gateway(
            sim.broker,
            sim.store,
            sim.now,
            s.broker.allowance_per_minute,
            s.broker.retry_base_s,
            k.retry_max,
        )
        self.router = Router(lockstep=False)
        self.sup = Supervisor(
            sim.policy, sim.store, sim.broker, self.gateway, self.router, sim.table, {}, sim.now
        )
        self.scope = trio.CancelScope()
        self.ready = False
        self.ready_at = math.inf
        self.alive = True
        self.root: trio.lowlevel.Task | None = None

    async def run(self) -> None:
        self.root = trio.lowlevel.current_task()
        try:
            with self.scope:
                async with trio.open_nursery() as n:
                    await n.start(self.gateway.run)
                    await n.start(self.router.run)
                    await n.start(self.sup.run)
                    n.start_soon(self.sim.broker.run, self.sup.on_broker_event)
                    self.ready, self.ready_at = True, trio.current_time()
                    await trio.sleep_forever()
        except Exception as exc:  # the daemon died: reported, then restarted like a crash
            self.sim.runtime_error(self, exc)

    def kill(self) -> None:
        if self.root is not None:
            self.sim.fence.kill(self.root)
        self.scope.cancel()
        self.alive = self.ready = False


class World:
    """One seed's world: the scenario's market, broker, store and the runtime's lives,
    driven through the story; ``result`` is the verdict."""

    def __init__(self, seed: int, k: Knobs) -> None:
        self.seed, self.k = seed, k
        self.rng = random.Random(seed)
        self.table = InstrumentTable()
        self.sc: Scenario = make_scenario(self.rng, k, self.table)
        self.fence = Fence()
        self.broker = FakeBroker(
            self.rng, self.table, self.sc.latency, self.sc.faults, self.sc.min_stop, self.fence
        )
        self.store = SimStore(self.rng, self.fence, lag_mean=self.sc.store_lag, journal=k.journal)
        self.policy = make_policy(settings(), self.broker)
        self.lives: list[Life] = []
        self.extra: list[Violation] = []
        self.counts: Counter[str] = Counter()
        self.timeline: list[str] = []  # what the harness did, for --verbose
        self._events: list[tuple[float, int, int, Callable[[], None]]] = []
        self._seq = 0
        self._world: trio.Nursery | None = None
        self._wake = trio.Event()
        self.checker: Checker | None = None

    def now(self) -> datetime:
        return T0 + timedelta(seconds=trio.current_time())

    @property
    def life(self) -> Life:
        return self.lives[-1]

    # -- the story ----------------------------------------------------------------------------
    async def main(self) -> None:
        deals = self._open_trades()
        self.checker = Checker(
            self.broker, self.store, deals, self.policy.ladder, self.sc.calm_needed
        )
        async with trio.open_nursery() as world:
            self._world = world
            world.start_soon(self.broker.serve)
            self._start_life()
            self._schedule()
            await self._drive()
            world.cancel_scope.cancel()

    def _open_trades(self) -> dict[str, int]:
        deals = {}
        for spec in self.sc.trades:
            record = TradeRecord(
                spec.deal_id,
                spec.epic,
                spec.direction,
                1.0,
                spec.entry,
                spec.stop,
                spec.stop,
                spec.limit,
                TradeStatus.OPEN,
                T0 - timedelta(minutes=1),
            )
            trade = self.store.insert(record)
            assert trade.id is not None
            deals[spec.deal_id] = trade.id
            self.broker.add_position(record.position(spec.stop))
        return deals

    def _at(self, t: float, prio: int, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, prio, self._seq, action))
        self._wake.set()  # the driver may be sleeping towards a later event

    def _schedule(self) -> None:
        for p in self.sc.phases:
            self._at(p.start, 1, lambda p=p: self._phase_start(p))  # type: ignore[misc]
            if not p.storm:
                self._at(p.end, 0, lambda p=p: self._calm_end(p))  # type: ignore[misc]
        for c in self.sc.crashes:
            self._at(c.t, 2, lambda c=c: self._crash(c))  # type: ignore[misc]
        for e in self.sc.externals:
            self._at(e.t, 4, lambda e=e: self._external(e.deal_id, e.remove, e.loosen_pips))  # type: ignore[misc]

    async def _drive(self) -> None:
        steps = iter(self.sc.steps)
        step = next(steps, None)
        while self._events or step is not None:
            tick_first = step is not None and (not self._events or step[0] < self._events[0][0])
            t = step[0] if step is not None and tick_first else self._events[0][0]
            if t > trio.current_time():
                self._wake = trio.Event()
                with trio.move_on_at(t):
                    await self._wake.wait()
                    continue  # an earlier event was scheduled meanwhile
            if step is not None and tick_first:
                await self._ticks(step[1])
                step = next(steps, None)
            else:
                heapq.heappop(self._events)[3]()
            assert self.checker is not None
            self.checker.step()

    async def _ticks(self, ticks: tuple[Any, ...]) -> None:
        assert self.checker is not None
        live = self.life.ready
        for tick in ticks:
            self.broker.on_market(tick)
            self.checker.observe(tick, live)
            self.counts["ticks"] += 1
        if live:
            for tick in ticks:  # back to back, no checkpoint: a burst piles up in the mailbox
                await self.life.router.publish(tick)
            self.counts["published"] += len(ticks)

    def _note(self, what: str) -> None:
        self.timeline.append(f"{trio.current_time():.2f}:{what}")

    def _phase_start(self, p: Phase) -> None:
        self.broker.faults_on = p.storm
        self._note("storm" if p.storm else "calm")

    def _calm_end(self, p: Phase) -> None:
        life = self.life
        if life.ready and self.checker is not None:
            self.checker.calm_end(max(p.start, life.ready_at), p.end)

    def _crash(self, c: Crash, armed: bool = False) -> None:
        """Kill the runtime now (or, ``after_apply``, right after the broker next applies one
        of its amendments: the answer and every record of it are lost)."""
        if c.after_apply and not armed:
            self.broker.on_apply = lambda deal: self._crash(c, armed=True)
            return
        self.broker.on_apply = None
        if not self.life.alive:
            return
        self.life.kill()
        self.counts["crashes"] += 1
        lost = self.store.crash()
        kept = "journaled" if self.k.journal else "lost"
        self._note(f"crash({kept}_writes={lost},{'after_apply' if armed else 'timed'})")
        self._at(trio.current_time() + c.downtime, 3, lambda: self._restart(c.fail_reads))

    def _restart(self, fail_reads: int) -> None:
        self._note(f"restart(fail_reads={fail_reads})")
        self.broker.fail_next_reads(fail_reads)
        self._start_life()

    def _start_life(self) -> None:
        assert self._world is not None
        life = Life(self, len(self.lives) + 1)
        self.lives.append(life)
        self._world.start_soon(life.run, name=f"life-{life.number}")

    def _external(self, deal_id: str, remove: bool, loosen: float) -> None:
        if self.broker.faults_on and self.broker.external_change(deal_id, remove, loosen):
            self._note(f"external({deal_id},{'remove' if remove else f'-{loosen:.1f}pips'})")

    def runtime_error(self, life: Life, exc: BaseException) -> None:
        if not life.alive:
            return
        tb = "".join(traceback.format_exception(exc)).strip().splitlines()
        self.extra.append(Violation("error", trio.current_time(), None, f"{tb[-1]} ({_where(tb)})"))
        life.kill()
        self.store.crash()
        self._at(trio.current_time() + self.k.max_latency + 1.0, 3, lambda: self._restart(0))

    def on_spin(self, t: float, steps: int, task: str) -> None:
        self.extra.append(
            Violation(
                "d",
                t,
                None,
                f"{steps} scheduler steps without the clock moving on (last task {task})",
            )
        )

    # -- the verdict --------------------------------------------------------------------------
    def result(self, meter: SpinMeter) -> SeedResult:
        checker = self.checker
        assert checker is not None
        violations = sorted(checker.violations + self.extra, key=lambda v: v.t)
        faults = {k: self.broker.counts.get(k, 0) for k in FAULT_KINDS}
        faults["crashes"] = self.counts["crashes"]
        faults["journaled_writes"] = self.store.counts["journaled_writes"]
        faults["lost_writes"] = self.store.counts["lost_writes"]
        coalesced = sum(life.router.statistics().coalesced for life in self.lives)
        stats: dict[str, float] = {
            "ticks": self.counts["ticks"],
            "published": self.counts["published"],
            "coalesced": coalesced,
            "amend_calls": self.broker.counts["amend_calls"],
            "applied": self.broker.counts["applied"],
            "lives": len(self.lives),
            "steps": meter.steps,
            "max_steps_instant": meter.max_instant,
            "max_steps_second": meter.max_second,
            "closed": self.broker.counts["closed_stop"] + self.broker.counts["closed_limit"],
            **checker.stats(),
        }
        return SeedResult(
            self.seed, self.k, violations, faults, stats, self._digest(), self._detail()
        )

    def _digest(self) -> str:
        h = hashlib.sha1()
        for deal, pos in sorted(self.broker.positions.items()):
            h.update(repr((deal, pos.history, pos.closed_at)).encode())
        for trade_id, log in sorted(self.store.sl_log.items()):
            h.update(repr((trade_id, log)).encode())
        return h.hexdigest()[:12]

    def _detail(self) -> list[str]:
        out = ["harness: " + " ".join(self.timeline)]
        for deal, pos in sorted(self.broker.positions.items()):
            p = pos.inst.to_price
            moves = " ".join(
                f"{c.t:.2f}:{'-' if c.level is None else p(c.level)}:{c.source[0]}"
                for c in pos.history
            )
            closed = (
                "" if pos.closed_at is None else f" closed {pos.exit_reason} @{pos.closed_at:.2f}"
            )
            out.append(f"{deal} {pos.direction.value} {pos.epic} entry {p(pos.entry)}{closed}")
            out.append(f"  broker: {moves}")
        for trade_id, log in sorted(self.store.sl_log.items()):
            out.append(f"  db trade {trade_id}: " + " ".join(f"{t:.2f}:{v}:{w}" for t, v, w in log))
        return out


def _where(tb: list[str]) -> str:
    frames = [line.strip() for line in tb if line.strip().startswith("File ")]
    return frames[-1] if frames else "?"
