"""Amendment writes per second through the store: write_amendment (pending) + sent + confirm.

    .venv/bin/python bench/bench_store.py [--runs 5] [--amendments 300] [--actors 1,10]
                                          [--engines sqlite,postgresql] [--pg-server URL]

One amendment is three durable writes (the write-ahead sequence). ``actors=1`` is the latency one
trade actor sees (every write awaited before the next); ``actors=10`` runs ten trades at once and
shows the single writer batching their writes into shared transactions. Each run uses a fresh
database (a SQLite file in a temporary directory; a throw-away PostgreSQL database, dropped after).
The figure printed is the median over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from traild.adapters.store import open_store
from traild.core.messages import AmendState, Direction, TradeRecord

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


@contextmanager
def fresh_database(engine: str, server: str) -> Iterator[str]:
    if engine == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{tmp}/bench.db"
        return
    name = f"traild_bench_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(f"{server}/postgres", timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def one_run(url: str, actors: int, amendments: int) -> float:
    """Amendments per second, ``amendments`` in total spread over ``actors`` trades."""
    async with open_store(url, migrate=True, write_timeout=30) as store:
        trade_ids = []
        for n in range(actors):
            added = await store.add_trade(
                TradeRecord(deal_id=f"BENCH-{n}", epic="EURUSD", direction=Direction.BUY,
                            entry_price=1.1, sl_price=1.0985, opened_at=datetime.now(UTC))
            )  # fmt: skip
            assert added.id is not None
            trade_ids.append(added.id)

        async def actor(trade_id: int, count: int) -> None:
            level = 1.0985
            for _ in range(count):
                ts = datetime.now(UTC)
                new = round(level + 0.00001, 5)
                amendment = await store.write_amendment(
                    trade_id, f"BENCH-{trade_id}", new, level, "stage3", ts
                )
                await store.update_amendment(amendment, AmendState.SENT, ts, broker_ref="REF")
                await store.confirm_amendment(amendment, new, ts)
                level = new

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for trade_id in trade_ids:
                nursery.start_soon(actor, trade_id, amendments // actors)
        elapsed = time.perf_counter() - start
        return (amendments // actors) * actors / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--amendments", type=int, default=300)
    parser.add_argument("--actors", default="1,10")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--pg-server", default=PG_SERVER)
    args = parser.parse_args()
    print(f"amendments/s (pending + sent + confirmed = 3 writes), median of {args.runs} runs")
    print(f"{'engine':<11} {'actors':>6} {'amend/s':>9} {'writes/s':>9}   runs")
    for engine in args.engines.split(","):
        for actors in (int(a) for a in args.actors.split(",")):
            rates = []
            for _ in range(args.runs):
                with fresh_database(engine, args.pg_server) as url:
                    rates.append(trio.run(one_run, url, actors, args.amendments))
            median = statistics.median(rates)
            runs = " ".join(f"{r:.0f}" for r in rates)
            print(f"{engine:<11} {actors:>6} {median:>9.0f} {3 * median:>9.0f}   [{runs}]")


if __name__ == "__main__":
    main()
