"""How far ``--bars`` results are from tick results on a period that has both (SPEC §8).

    .venv/bin/python bench/bars_vs_ticks.py [--trades 2000] [--seed 1]

The OANDA EURUSD ticks and the OANDA M1 bid/ask bars of 2014-05-01..15 cover the same market.
The same entries (random minutes of trading time, random direction and kind, as ``--random``
draws them) are written to a signals CSV and run through ``traild backtest`` twice: on the
ticks, and on the bars (pessimistic in-bar path). Printed per variant: the headline metrics
of both and their difference, and per trade how often the exit reason agrees and the mean
absolute P&L difference. The README quotes these figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traild.adapters.tickfiles import ms_to_datetime  # noqa: E402
from traild.backtest.engine import BacktestRequest, run_backtest  # noqa: E402
from traild.backtest.markets import TickSource, load_market  # noqa: E402
from traild.backtest.metrics import metrics  # noqa: E402
from traild.backtest.signals import random_signals  # noqa: E402
from traild.backtest.simulate import iso  # noqa: E402
from traild.config.settings import Settings  # noqa: E402
from traild.core.instruments import InstrumentTable  # noqa: E402

DATA = ROOT / ".." / "shared" / "data" / "fx"
TICKS = DATA / "ticks" / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
BID = DATA / "bars_m1" / "EURUSD_oanda_m1_bid_2014-05-01_2014-05-15.csv.gz"
ASK = DATA / "bars_m1" / "EURUSD_oanda_m1_ask_2014-05-01_2014-05-15.csv.gz"
KEYS = ("expectancy_pips", "win_rate", "profit_factor", "protected_share", "premature_stopouts")


def _signals(path: Path, trades: int, seed: int) -> None:
    market = load_market(TickSource.parse(str(TICKS)), InstrumentTable())
    lines = ["ts_utc,epic,direction,stop_pips,limit_pips,is_scalp"]
    for s in random_signals(trades, seed, [market]):
        minute = ms_to_datetime(s.ts_ms // 60_000 * 60_000 + 60_000)  # the next bar's open
        lines.append(
            f"{iso(minute)},EURUSD,{s.direction.value},{s.stop_pips:g},{s.limit_pips:g},"
            f"{s.is_scalp}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        signals = Path(tmp) / "signals.csv"
        _signals(signals, args.trades, args.seed)
        ticks = run_backtest(settings, BacktestRequest((str(TICKS),), signals=str(signals)))
        bars = run_backtest(
            settings,
            BacktestRequest((), signals=str(signals), bars=(str(BID),), ask_bars=(str(ASK),)),
        )
    print(f"{args.trades} entries (seed {args.seed}), same signals; ticks vs M1 bars\n")
    print(f"{'variant':<14}{'metric':<20}{'ticks':>10}{'bars':>10}{'bars-ticks':>12}")
    for v in ticks.variants:
        t_rows = [r for r in ticks.rows if r.variant == v.name]
        b_rows = [r for r in bars.rows if r.variant == v.name]
        mt, mb = metrics(t_rows), metrics(b_rows)
        for key in KEYS:
            a, b = mt[key], mb[key]
            diff = "-" if a is None or b is None else f"{b - a:+.3f}"
            print(f"{v.name:<14}{key:<20}{a!s:>10}{b!s:>10}{diff:>12}")
        same = sum(x.exit_reason == y.exit_reason for x, y in zip(t_rows, b_rows, strict=True))
        gaps = [abs(x.pnl_pips - y.pnl_pips) for x, y in zip(t_rows, b_rows, strict=True)]
        print(
            f"{v.name:<14}same exit reason {100 * same / len(t_rows):.1f} %, mean |pnl diff|"
            f" {statistics.mean(gaps):.2f} pips, median {statistics.median(gaps):.2f}\n"
        )


if __name__ == "__main__":
    main()
