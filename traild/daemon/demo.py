"""``traild demo``: the daemon on embedded defaults with a few paper trades, then a summary."""

from __future__ import annotations

import contextlib
import json
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from loguru import logger

from traild.config.settings import Settings
from traild.core.instruments import InstrumentTable
from traild.core.messages import Direction, TradeRecord, TradeStatus
from traild.daemon.app import Daemon


def demo_tables(state_dir: str) -> dict[str, dict[str, Any]]:
    """The demo's configuration over the embedded defaults: a state dir, a fast synthetic
    feed and a SQLite database inside the state dir."""
    return {
        "daemon": {"state_dir": state_dir, "heartbeat_s": 10.0},
        # 40 ticks/s in all; each tick of an epic is a minute of market time, so a 30 s demo
        # covers about five market hours and the ladder has something to do.
        "feed": {
            "kind": "synthetic",
            "synthetic_ticks_per_second": 40.0,
            "synthetic_interval_ms": 60_000.0,
        },
        "database": {"url": "sqlite+aiosqlite:///traild-demo.db"},
    }


def demo_settings(state_dir: str) -> Settings:
    """Embedded defaults, a temporary state dir, a fast synthetic feed."""
    t = demo_tables(state_dir)
    return Settings(daemon=t["daemon"], feed=t["feed"], database=t["database"])


CONFIG_NAME = "traild.toml"  # written into a kept state directory


def demo_config_text(state_dir: str) -> str:
    """The demo's configuration as a TOML file (flat tables of strings and numbers), so
    ``traild report --config DIR/traild.toml`` reads the kept demo's database."""
    lines = ["# written by `traild demo --keep`: the demo's settings over the defaults"]
    for table, values in demo_tables(state_dir).items():
        lines.append(f"\n[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def run_demo(seconds: float, trades: int, json_logs: bool, keep: bool = False) -> int:
    """The demo in a temporary state directory, removed afterwards unless ``keep``: then it
    holds the database and a ``traild.toml`` for ``traild report`` (and ``run``)."""
    from traild.log import setup_logging

    setup_logging(json=True if json_logs else None, level="INFO" if json_logs else "WARNING")
    events: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    logger.add(lambda m: _count(m, events, reasons), level="INFO", format="{message}")
    with contextlib.ExitStack() as stack:
        if keep:
            tmp = tempfile.mkdtemp(prefix="traild-demo-")
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="traild-demo-"))
        settings = demo_settings(tmp)
        Path(settings.state_path()).mkdir(parents=True, exist_ok=True)
        print(
            f"traild demo: {trades} paper trades on a synthetic feed for {seconds:g} s "
            f"(state in {tmp}{', kept' if keep else ''})",
            file=sys.stderr,
        )
        closed = trio.run(_main, settings, seconds, trades, events)
        if keep:
            config = Path(tmp) / CONFIG_NAME
            config.write_text(demo_config_text(tmp), encoding="utf-8")
    _summary(closed, events, reasons)
    if keep:
        print(
            f"\nstate kept in {tmp} (database and {CONFIG_NAME}); try:\n"
            f"  traild report --since all --config {config}\n"
            f"  traild report --since all --html {Path(tmp) / 'report.html'} --config {config}\n"
            f"remove it when done: rm -r {tmp}"
        )
    return 0


def _count(message: Any, events: Counter[str], reasons: Counter[str]) -> None:
    extra = message.record["extra"]
    event = extra.get("event")
    if event:
        events[event] += 1
        if event == "stop.confirmed" and extra.get("reason"):
            reasons[extra["reason"]] += 1


PROGRESS_EVERY_S = 5.0


async def _progress(daemon: Daemon, events: Counter[str], seconds: float) -> None:
    """A line on stderr every few seconds, so the demo is never silent."""
    every = min(PROGRESS_EVERY_S, max(1.0, seconds / 4))
    elapsed = 0.0
    while elapsed + every < seconds:
        await trio.sleep(every)
        elapsed += every
        open_ = events["trade.adopted"] - events["trade.closed"]
        print(
            f"  {elapsed:4.0f} s: {daemon.stats.ticks:,} ticks, {open_} trades open, "
            f"{events['stop.confirmed']} stops moved, {events['trade.closed']} closed",
            file=sys.stderr,
        )


async def _main(
    settings: Settings, seconds: float, n: int, events: Counter[str]
) -> list[TradeRecord]:
    from traild.adapters.store import open_store

    url = settings.database_url()
    rng = random.Random(42)
    epics = settings.feed.synthetic_epics
    async with open_store(url, migrate=True) as store:
        for i in range(n):
            scalp = i % 3 == 2
            await store.add_trade(
                TradeRecord(
                    deal_id=f"DEMO-{i + 1}",
                    epic=epics[i % len(epics)],
                    direction=Direction.BUY if rng.random() < 0.5 else Direction.SELL,
                    size=1.0,
                    status=TradeStatus.PENDING,
                    is_scalp_trade=scalp,
                    stop_pips=8.0 if scalp else 15.0,
                    limit_pips=25.0 if scalp else 60.0,
                )
            )
    daemon = Daemon(settings)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_progress, daemon, events, seconds)
        with trio.move_on_after(seconds):
            await daemon.run()
        nursery.cancel_scope.cancel()
    async with open_store(url) as store:
        return await store.trades_since(None)


def _summary(trades: list[TradeRecord], events: Counter[str], reasons: Counter[str]) -> None:
    closed = [t for t in trades if t.status == TradeStatus.CLOSED]
    pnl = sum(t.pnl_pips or 0.0 for t in closed)
    print()
    print(
        f"{'deal':<9} {'epic':<21} {'dir':<4} {'entry':>10} {'stop':>10} {'status':<7} "
        f"{'exit':>10} {'pips':>7}"
    )
    table = InstrumentTable()
    for t in trades:
        price = _prices(table, t.epic)
        print(
            f"{t.deal_id:<9} {t.epic:<21} {t.direction.value:<4} {price(t.entry_price):>10} "
            f"{price(t.sl_price):>10} {t.status.value:<7} {price(t.exit_price):>10} "
            f"{_pips(t.pnl_pips):>7}"
        )
    print()
    print(f"trades: {len(trades)} ({len(closed)} closed, {len(trades) - len(closed)} open)")
    moved = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
    print(f"stops moved by reason: {moved or 'none'}")
    print(f"profit locks confirmed: {reasons.get('profit_lock', 0)}")
    print(f"closed P&L: {pnl:+.1f} pips")
    print(
        f"ticks rejected: {events.get('tick.rejected', 0)}; "
        f"amendments rejected: {events.get('stop.rejected', 0)}"
    )


def _prices(table: InstrumentTable, epic: str) -> Callable[[float | None], str]:
    """Prices of ``epic`` with the decimals of its tick (1.08340, 151.230)."""
    exponent = table.resolve(epic).tick_size.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return lambda value: "-" if value is None else f"{value:.{decimals}f}"


def _pips(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"
