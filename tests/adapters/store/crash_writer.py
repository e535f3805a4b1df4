"""Child of test_store_crash: one amendment writer, killed by the test at a random point.

    python crash_writer.py URL TRADE_ID...

One task per trade loops write_amendment (pending) -> sent -> confirm -> save_progress, each
level one tick above the last, and prints a line after each acknowledged call. It stops by
itself after 20 s.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import trio

from traild.adapters.store import SqlTradeStore, open_store
from traild.core.messages import AmendState


def say(*words: object) -> None:
    print(*words, flush=True)


async def actor(store: SqlTradeStore, trade_id: int) -> None:
    previous = 1.0
    for step in range(1, 1_000_000):
        level = round(1.0 + step / 1e5, 5)
        ts = datetime.now(UTC)
        amendment = await store.write_amendment(
            trade_id, f"D{trade_id}", level, previous, "stage3", ts
        )
        say("pending", amendment, trade_id, repr(level))
        await store.update_amendment(amendment, AmendState.SENT, ts, broker_ref=f"R{amendment}")
        say("sent", amendment, trade_id, repr(level))
        await store.confirm_amendment(amendment, level, ts, profit_lock=step == 1)
        say("confirmed", amendment, trade_id, repr(level))
        await store.save_progress(trade_id, level)
        previous = level


async def write_until_killed(url: str, trade_ids: list[int]) -> None:
    with trio.move_on_after(20):
        async with open_store(url, write_timeout=30) as store:
            say("ready")
            async with trio.open_nursery() as nursery:
                for trade_id in trade_ids:
                    nursery.start_soon(actor, store, trade_id)


if __name__ == "__main__":
    trio.run(write_until_killed, sys.argv[1], [int(w) for w in sys.argv[2:]])
