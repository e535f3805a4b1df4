"""The router skips actors for ticks inside their quiet band: exactly the same decisions as
delivering every tick to every actor."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.runtime.fakes import ScriptedBroker
from traild.config.settings import Settings
from traild.core.messages import Direction, Tick, TradeRecord
from traild.daemon.app import make_policy
from traild.runtime.gateway import AmendTarget
from traild.runtime.router import Router
from traild.runtime.stages import fixed_stages
from traild.runtime.trade_actor import ActorPlan, TradeActor

EPIC = "CS.D.EURUSD.MINI.IP"
T0 = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)


class ConfirmingGateway:
    """Records every amendment and confirms it at once (so the ladders keep trailing)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, float, str]] = []

    def track(self, trade_id: int, stop: float | None, better: Any) -> None:
        return None

    def held(self, trade_id: int) -> float | None:
        return None

    def confirmed(self, trade_id: int) -> float | None:
        return None

    def submit(self, target: AmendTarget) -> bool:
        self.sent.append((target.trade_id, target.level, target.reason.value))
        target.on_confirmed(target.level)
        return True


def _actors(gateway: Any, n: int, sides: str = "mixed") -> list[TradeActor]:
    settings = Settings()
    policy = make_policy(settings, ScriptedBroker())
    inst = settings.instrument_table().resolve(EPIC)
    actors = []
    for i in range(n):
        buy = {"mixed": i % 2 == 0, "buy": True, "sell": False}[sides]
        direction = Direction.BUY if buy else Direction.SELL
        entry = 1.10000 + (i % 7) * 0.00013
        stop = round(entry - direction.sign * (0.0008 + (i % 5) * 0.0003), 5)
        limit = round(entry + direction.sign * 0.0040, 5) if i % 3 == 0 else None
        trade = TradeRecord(
            f"Q{i}", EPIC, direction, 1.0, entry, stop, stop, limit, opened_at=T0, id=i + 1
        )
        plan = ActorPlan(fixed_stages(policy, trade, "disabled"), policy.ladder)
        actors.append(TradeActor(trade, inst, plan, gateway))
    return actors


def _path(n: int) -> list[Tick]:
    rng = random.Random(13)
    mid, ticks = 1.10050, []
    for k in range(n):
        mid += rng.choice((-1, 1)) * rng.choice((0.00001, 0.00002, 0.00005, 0.00010))
        spread = rng.choice((0.00001, 0.00002, 0.00003))
        bid = round(mid, 5)
        ticks.append(Tick(EPIC, T0 + timedelta(seconds=k), bid, round(bid + spread, 5)))
    return ticks


def _state(actor: TradeActor) -> tuple[Any, ...]:
    ladder = actor.ladder
    return ladder.best, ladder.stop, ladder.pending, ladder.closed


@pytest.mark.parametrize("sides", ["mixed", "buy", "sell"])  # "buy"/"sell": one price for all
async def test_skipping_quiet_actors_gives_the_same_amendments_and_exits(sides: str) -> None:
    routed_gw, direct_gw = ConfirmingGateway(), ConfirmingGateway()
    routed, direct = _actors(routed_gw, 40, sides), _actors(direct_gw, 40, sides)
    router = Router(lockstep=True)
    for actor in routed:
        router.subscribe(EPIC, actor.trade_id, actor)
    for tick in _path(4000):
        await router.publish(tick)
        for actor in direct:
            actor.on_tick(tick)
        assert [_state(a) for a in routed] == [_state(b) for b in direct], tick
    assert routed_gw.sent == direct_gw.sent
    assert len(routed_gw.sent) > (40 if sides == "mixed" else 20)  # the path trails them all
    stats = router.statistics()
    assert any(a.ladder.closed for a in routed)
    assert stats.skipped > stats.delivered  # most deliveries were not needed
