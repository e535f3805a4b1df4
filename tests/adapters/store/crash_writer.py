"""Child of test_store_crash: a zygote that forks one amendment writer per trial.

    python crash_writer.py        commands on stdin, one per line: ``run URL TRADE_ID...``

Everything is imported once here; each trial forks a fresh writer (a single-threaded zygote that
never ran trio or asyncio forks safely), reports ``pid N``, reaps it and reports ``exit N STATUS``.
The writer runs one task per trade looping write_amendment (pending) -> sent -> confirm ->
save_progress, each level one tick above the last, and prints a line after each acknowledged call.
The zygote exits when stdin closes; a writer stops by itself after 20 s.
"""

from __future__ import annotations

import os
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


def serve() -> None:
    for command in sys.stdin:
        words = command.split()
        if not words or words[0] != "run":
            continue
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                trio.run(write_until_killed, words[1], [int(w) for w in words[2:]])
                code = 0
            finally:
                sys.stdout.flush()
                os._exit(code)
        say("pid", pid)
        _, status = os.waitpid(pid, 0)
        say("exit", pid, status)


if __name__ == "__main__":
    serve()
