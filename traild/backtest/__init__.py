"""``traild backtest``: historical ticks through the daemon's own trailing core (SPEC §8).

markets   tick files -> accepted integer-tick columns; entry conditions (BarHistory)
signals   signals CSV or seeded random entries -> resolved trades
variants  fixed, fixed+lock, dynamic+lock, multiplier grids
kernel    the vectorised fast path (exact; hands capped trades back)
paths     the event-driven path (Ladder + run_trade) and the fast path with its fallback
engine    the run: stages and plans per variant, units in worker processes, rows
metrics   SPEC §8 metrics per variant, regime, session
report    table, trades.csv, summary.json, run.json, report.md; charts: PNGs
"""
