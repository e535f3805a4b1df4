"""``traild backtest``: fixed versus dynamic trailing over historical ticks (SPEC §8)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from traild.backtest.names import DEFAULT_VARIANTS
from traild.cli.args import non_negative_int, number, positive_int
from traild.cli.args import positive_float as _positive_float
from traild.core.errors import DataError, UsageError

_FAST, _EVENT = "fast", "event"  # traild.backtest.paths.FAST / EVENT
_MAX_RANDOM = 100_000  # traild.backtest.signals.MAX_RANDOM (not imported: NumPy loads lazily)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "backtest",
        help="fixed versus dynamic trailing over historical ticks",
        description="Replay tick files through the trailing core for each variant and report "
        "the metrics of SPEC §8 (table; report.md, trades.csv, summary.json, run.json and "
        "charts in --out).",
    )
    p.add_argument(
        "--ticks",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE[=EPIC]",
        help="tick files; the epic defaults to the currency pair starting the file name",
    )
    p.add_argument(
        "--bars",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE[=EPIC]",
        help="M1 bid-bar files (ts_utc,open,high,low,close), walked pessimistically: "
        "BUY open-low-high-close, SELL open-high-low-close",
    )
    p.add_argument(
        "--ask-bars",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="the ask bars of each --bars file, same order (default: bid + [backtest] "
        "bar_spread_pips)",
    )
    p.add_argument(
        "--bar-spread-pips",
        type=_non_negative_float,
        default=None,
        metavar="PIPS",
        help="spread added to bid bars without --ask-bars (default [backtest] bar_spread_pips)",
    )
    entries = p.add_mutually_exclusive_group(required=True)
    entries.add_argument("--signals", metavar="CSV", help="entries from a signals CSV")
    entries.add_argument(
        "--random",
        type=_random_count,
        metavar="N",
        help=f"N random entries, uniform over trading time (at most {_MAX_RANDOM:,}, and at "
        "most one per tick or bar of the files)",
    )
    entries.add_argument(
        "--entries",
        choices=("ema-cross", "breakout"),
        help="TEST entries, not trading advice: ema-cross = EMA 9/21 cross of M15 closes; "
        "breakout = 20-bar Donchian breakout of M15 closes",
    )
    p.add_argument(
        "--walk-forward",
        type=positive_int,
        default=None,
        metavar="K",
        help="K time folds: the best --grid point of fold i is evaluated on fold i+1 (K >= 2)",
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0, metavar="S", help="random seed (default 0)"
    )
    p.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        metavar="LIST",
        help=f"comma-separated, default {DEFAULT_VARIANTS}",
    )
    p.add_argument(
        "--grid",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=V1,V2",
        help="multiplier grid of dynamic+lock variants, e.g. volatility.low=0.6,0.7",
    )
    p.add_argument(
        "--lookahead",
        type=_positive_float,
        default=None,
        metavar="MIN",
        help="minutes after a stop-out to look for the take-profit "
        "(default [backtest] lookahead_minutes, 60)",
    )
    p.add_argument("--out", default="backtest-out", metavar="DIR", help="default ./backtest-out")
    p.add_argument("--json", action="store_true", help="print summary.json only")
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $TRAILD_CONFIG, else ./config/traild.toml if present)",
    )
    p.add_argument(
        "--jobs",
        type=_jobs,
        default=0,
        metavar="N",
        help=f"worker processes, 1 to {MAX_JOBS} (default: chosen from the work size, at most"
        " one per core)",
    )
    p.add_argument(
        "--engine",
        choices=(_FAST, _EVENT),
        default=_FAST,
        help="fast: vectorised kernel (default); event: the event-driven core for every trade",
    )
    p.add_argument(
        "--no-cache",
        dest="tick_cache",
        action="store_false",
        help="parse the tick files without the parsed-tick cache, and store nothing in it "
        "(cache: $TRAILD_CACHE_DIR, else $XDG_CACHE_HOME/traild/ticks, else "
        "~/.cache/traild/ticks; TRAILD_NO_CACHE=1 turns it off for every command)",
    )
    p.set_defaults(func=_backtest)


MAX_JOBS = 256


def _jobs(text: str) -> int:
    value = positive_int(text)
    if value > MAX_JOBS:
        raise argparse.ArgumentTypeError(f"at most {MAX_JOBS} worker processes: {text!r}")
    return value


def _random_count(text: str) -> int:
    value = positive_int(text)
    if value > _MAX_RANDOM:
        raise argparse.ArgumentTypeError(f"at most {_MAX_RANDOM:,} entries per run (memory)")
    return value


def _non_negative_float(text: str) -> float:
    return number(
        text,
        float,
        lambda v: math.isfinite(v) and v >= 0,
        "not a number",
        "must be a non-negative number",
    )


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal; it moves once per
    finished chunk of trades (trade runs = trades x variants)."""

    def __init__(self) -> None:
        self.enabled = _interactive()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < 2:
            return
        filled = round(30 * done / total)
        sys.stderr.write(
            f"\rbacktest [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,} trade runs"
        )
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _interactive() -> bool:
    """Progress only for a person watching: on a pipe stderr stays the one line of an error."""
    return sys.stderr.isatty()


def _note(line: str) -> None:
    """A progress line on stderr before each slow step the trade-run bar does not cover
    (reading each file, finding the entries, judging the claims, writing, drawing)."""
    if _interactive():
        sys.stderr.write(f"backtest: {line}\n")
        sys.stderr.flush()


def _once(items: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """``items`` without repeats of the same file for the same epic, and the repeats as
    (repeat, first): a file given twice would be two markets, every entry traded twice."""
    from traild.backtest.markets import TickSource

    first: dict[tuple[Path, str], str] = {}
    out, repeats = [], []
    for text in items:
        source = TickSource.parse(text)
        key = (source.path.resolve(), source.epic.upper())
        if key in first:
            repeats.append((text, first[key]))
            continue
        first[key] = text
        out.append(text)
    return out, repeats


def _backtest(args: argparse.Namespace) -> int:
    # Imported here, not with the parser: building it (any command's, or --help) needs
    # neither NumPy, matplotlib nor the settings' pydantic models.
    from traild.backtest.engine import BacktestRequest, run_backtest
    from traild.backtest.report import table, write_outputs
    from traild.backtest.signals import RandomDefaults
    from traild.config.settings import load

    if not args.ticks and not args.bars:
        raise UsageError("give --ticks FILE or --bars FILE")
    bar_repeats = _once(args.bars)[1]
    if bar_repeats:  # paired with --ask-bars by position: which one to drop is not ours to say
        raise UsageError(f"--bars {bar_repeats[0][0]} repeats {bar_repeats[0][1]}; give it once")
    ticks, repeats = _once(args.ticks)
    for repeat, first in repeats:
        sys.stderr.write(f"traild: warning: --ticks {repeat} repeats {first}; read once\n")
    settings = load(args.config)
    b = settings.backtest
    spread = b.bar_spread_pips if args.bar_spread_pips is None else args.bar_spread_pips
    request = BacktestRequest(
        ticks=tuple(ticks),
        signals=args.signals,
        random=args.random,
        entries=args.entries,
        bars=tuple(args.bars),
        ask_bars=tuple(args.ask_bars),
        bar_spread_pips=spread,
        walk_forward=args.walk_forward,
        seed=args.seed,
        variants=args.variants,
        grid=tuple(args.grid),
        lookahead_minutes=args.lookahead or settings.backtest.lookahead_minutes,
        jobs=args.jobs,
        engine=args.engine,
        tick_cache=args.tick_cache,
        defaults=RandomDefaults(
            b.stop_pips, b.limit_pips, b.scalp_stop_pips, b.scalp_limit_pips, b.scalp_share
        ),
    )
    result = run_backtest(settings, request, _Progress(), _note)
    out = Path(args.out)
    try:
        summary = write_outputs(result, out, note=_note)
    except OSError as exc:
        raise DataError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps(summary, indent=2, allow_nan=False))
        return 0
    print(table(summary))
    if "walk_forward" in summary:
        from traild.backtest.walkforward import verdict_line

        print(f"\n{verdict_line(summary['walk_forward'])}")
    for m in result.markets:
        if m.rejected:
            detail = ", ".join(f"{k} {v}" for k, v in sorted(m.rejected_by.items()))
            print(f"{m.source.path.name}: {m.rejected:,} ticks rejected ({detail})")
    replayed = sum(r.path == _EVENT for r in result.rows)
    note = f"; {replayed} trade runs on the event-driven core" if args.engine == _FAST else ""
    print(
        f"\n{len(result.trades)} trades x {len(result.variants)} variants{note}."
        f" Wrote report.md, trades.csv, summary.json, run.json and charts to {out}/"
    )
    return 0
