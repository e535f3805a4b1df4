"""Stop and limit changes pushed by the broker (IG's OPU) reach the running actor."""

from __future__ import annotations

import trio
import trio.testing

from tests.runtime.test_supervisor import T0, Rig, _run
from traild.core.messages import Direction, PositionAmended


async def test_tighter_stop_set_at_the_broker_becomes_the_floor_and_a_new_limit_is_resent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rig = Rig()
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800)

    async def body() -> None:
        await rig.sup.on_broker_event(PositionAmended("D1", 1.10005, 1.10600, T0))
        await rig.tick(1.10100, 1.10110)  # +10 pips: the profit lock (1.10010) beats 1.10005
        await trio.testing.wait_all_tasks_blocked()

    await _run(rig, body)
    assert [c[1:] for c in rig.broker.calls] == [(1.10010, 1.10600)]


async def test_stop_moved_away_at_the_broker_is_put_back_and_never_loosens_traild_s_floor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rig = Rig()
    await rig.add("D1", Direction.SELL, 1.10000, 1.10200)

    async def body() -> None:
        await rig.tick(1.09890, 1.09900)  # profit lock for the SELL: 1.09990
        await trio.testing.wait_all_tasks_blocked()
        await rig.sup.on_broker_event(PositionAmended("D1", 1.10300, None, T0))
        await rig.tick(1.09895, 1.09905)  # no new floor: nothing to send
        await trio.testing.wait_all_tasks_blocked()

    await _run(rig, body)
    slot = next(iter(rig.sup.slots.values()))
    assert slot.actor.trade.sl_price == 1.09990
    # the confirmed level is sent again (issue #19: a stop loosened at the broker is restored)
    assert [c[1] for c in rig.broker.calls] == [1.09990, 1.09990]
    assert [a.reason for a in rig.store.amendments.values()] == ["profit_lock", "restore"]
