"""traild's backtest against what a user would otherwise run: backtesting.py, same entries.

    .venv/bin/pip install -e '.[bench]'      # backtesting.py (and pandas)
    .venv/bin/python bench/bench_vs_backtesting.py [--trades 1000,10000] [--repeat 3]

Data: the OANDA EURUSD M1 bid and ask bars of 2014-05-01..15 (../shared/data/fx/bars_m1). Entries:
N random bar opens (seeded), random direction, a 20-pip initial stop, no take-profit, regular
(not scalp) stages. Both sides trail the same ladder: the guaranteed profit lock (+10 → entry +1)
and the fixed DEFAULT stages of SPEC §2 (early BE 15/2, stage 1 20/8, stage 2 30/15, stage 3 from
40 at 10 pips behind the best price).

* traild: the whole process ``traild backtest --bars BID=EURUSD --ask-bars ASK --signals CSV
  --variants fixed+lock --jobs 1 --json`` (imports, loading, the kernel, every output file).
* backtesting.py: the whole process too (imports, loading the bars into a DataFrame, the run):
  a ``Strategy`` that opens each entry with ``buy``/``sell(sl=…)`` and, on every bar, raises each
  open trade's ``sl`` to the ladder's floor of its best price so far, as a user would write it
  (``hedging=True`` so that long and short trades coexist). backtesting.py has one price series
  (the bid bars here), so its fills ignore the spread; the entries are the same bar opens.

Printed: CPU seconds (user + system of the child process, ``getrusage``) per tool and size, medians
of ``--repeat`` runs, the ratio, and each tool's trade count and mean P&L in pips as a sanity check
(the fills differ in detail: traild walks each bar pessimistically on bid and ask, backtesting.py
fills stops at the bar's price without the spread). CPU seconds, not wall time, so that a loaded
machine changes the figures less; still say the load when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SHARED_FX_DATA", ROOT / ".." / "shared" / "data" / "fx"))
BID = DATA / "bars_m1" / "EURUSD_oanda_m1_bid_2014-05-01_2014-05-15.csv.gz"
ASK = DATA / "bars_m1" / "EURUSD_oanda_m1_ask_2014-05-01_2014-05-15.csv.gz"
STOP_PIPS = 20.0

# backtesting.py's side, run in its own process. The ladder is SPEC §2's fixed DEFAULT regular
# stages plus the profit lock, in pips from the entry (a BUY's floor; a SELL mirrors it).
BT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    from backtesting import Backtest, Strategy

    PIP = 0.0001
    bars_path, entries_path = sys.argv[1], sys.argv[2]
    bars = pd.read_csv(bars_path, parse_dates=["ts_utc"], index_col="ts_utc")
    bars.columns = ["Open", "High", "Low", "Close"]
    entries = {}
    for line in open(entries_path).read().split():
        ts, side = line.split(",")
        entries.setdefault(pd.Timestamp(ts), []).append(side)

    def floor(mfe):
        if mfe >= 40:
            return max(15.0, mfe - 10.0)
        if mfe >= 30:
            return 15.0
        if mfe >= 20:
            return 8.0
        if mfe >= 15:
            return 2.0
        if mfe >= 10:
            return 1.0
        return None

    class Ladder(Strategy):
        def init(self):
            self.best = {}

        def next(self):
            high, low = self.data.High[-1], self.data.Low[-1]
            for trade in self.trades:
                entry = trade.entry_price
                if trade.is_long:
                    best = max(self.best.get(id(trade), entry), high)
                    mfe = (best - entry) / PIP
                else:
                    best = min(self.best.get(id(trade), entry), low)
                    mfe = (entry - best) / PIP
                self.best[id(trade)] = best
                lock = floor(mfe)
                if lock is None:
                    continue
                if trade.is_long:
                    trade.sl = max(trade.sl, entry + lock * PIP)
                else:
                    trade.sl = min(trade.sl, entry - lock * PIP)
            for side in entries.get(self.data.index[-1], ()):
                price = self.data.Close[-1]
                if side == "BUY":
                    self.buy(size=10_000, sl=price - STOP * PIP)
                else:
                    self.sell(size=10_000, sl=price + STOP * PIP)

    STOP = float(sys.argv[3])
    run = Backtest(bars, Ladder, cash=1e12, hedging=True, finalize_trades=True)
    stats = run.run()
    trades = stats["_trades"]
    pips = ((trades["ExitPrice"] - trades["EntryPrice"]) * trades["Size"].clip(-1, 1) / PIP)
    print(json.dumps({"trades": int(len(trades)), "mean_pips": float(pips.mean())}))
    """
)


def _entries(n: int, seed: int) -> list[tuple[datetime, str]]:
    """N distinct random bar opens of the bid file (the bar after a chosen bar), each a side."""
    import gzip

    with gzip.open(BID, "rt", encoding="utf-8") as handle:
        next(handle)
        stamps = [line.split(",", 1)[0] for line in handle]
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(stamps) - 1), n))
    out = []
    for index in chosen:
        ts = datetime.strptime(stamps[index], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        out.append((ts, rng.choice(("BUY", "SELL"))))
    return out


def _cpu(cmd: list[str]) -> tuple[float, str]:
    """CPU seconds (user + system) of one child process, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        sys.exit(f"{cmd[:3]} failed ({run.returncode}): {run.stderr.strip()[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, run.stdout


def _traild(tmp: Path, entries: list[tuple[datetime, str]]) -> tuple[float, dict[str, float]]:
    signals = tmp / "signals.csv"
    lines = ["ts_utc,epic,direction,stop_pips,limit_pips,is_scalp"]
    for ts, side in entries:
        # backtesting.py opens at the close of the bar it decides on: the next bar's open.
        when = (ts + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{when},EURUSD,{side},{STOP_PIPS:g},,false")
    signals.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cmd = [
        sys.executable, "-m", "traild", "backtest", "--bars", f"{BID}=EURUSD",
        "--ask-bars", str(ASK), "--signals", str(signals), "--variants", "fixed+lock",
        "--jobs", "1", "--json", "--out", str(tmp / "out"),
    ]  # fmt: skip
    cpu, out = _cpu(cmd)
    summary = json.loads(out)
    variant = summary["variants"]["fixed+lock"]
    return cpu, {"trades": variant["trades"], "mean_pips": variant["expectancy_pips"]}


def _backtesting(tmp: Path, entries: list[tuple[datetime, str]]) -> tuple[float, dict[str, float]]:
    script = tmp / "bt_run.py"
    script.write_text(BT_SCRIPT, encoding="utf-8")
    listing = tmp / "entries.txt"
    listing.write_text(
        "\n".join(f"{ts:%Y-%m-%dT%H:%M:%SZ},{side}" for ts, side in entries) + "\n",
        encoding="utf-8",
    )
    cpu, out = _cpu([sys.executable, str(script), str(BID), str(listing), f"{STOP_PIPS:g}"])
    return cpu, json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", default="1000,10000", help="comma-separated sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not BID.is_file() or not ASK.is_file():
        sys.exit(f"the EURUSD M1 bars are not there (looked in {DATA}); set SHARED_FX_DATA")
    try:
        import backtesting  # noqa: F401
    except ImportError:
        sys.exit("backtesting.py is not installed: pip install -e '.[bench]'")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    print(f"{'trades':>7} {'traild CPU s':>13} {'backtesting.py CPU s':>21} {'ratio':>6}  sanity")
    for size in (int(s) for s in args.trades.split(",")):
        entries = _entries(size, args.seed)
        ours: list[float] = []
        theirs: list[float] = []
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            for _ in range(args.repeat):
                cpu, mine = _traild(tmp, entries)
                ours.append(cpu)
                cpu, other = _backtesting(tmp, entries)
                theirs.append(cpu)
        a, b = statistics.median(ours), statistics.median(theirs)
        print(
            f"{size:>7} {a:>13.2f} {b:>21.2f} {b / a:>5.1f}x  "
            f"traild {mine['trades']:.0f} trades, {mine['mean_pips']:+.2f} pips/trade; "
            f"backtesting.py {other['trades']:.0f} trades, {other['mean_pips']:+.2f} pips/trade"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end (medians of {args.repeat} runs)")


if __name__ == "__main__":
    main()
