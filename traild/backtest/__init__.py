"""``traild backtest``: historical ticks through the daemon's own trailing core (SPEC §8).

markets   tick files -> accepted integer-tick columns; entry conditions (BarHistory)
signals   signals CSV or seeded random entries -> resolved trades
variants  fixed, fixed+lock, dynamic+lock, multiplier grids
kernel    the vectorised fast path (exact; hands capped trades back)
paths     the event-driven path (Ladder + run_trade) and the fast path with its fallback
engine    the run: load, resolve entries and variants (prepare), then execute
units     units of work, stages and plans per variant, worker processes
rows      TradeRow (one trade in one variant), premature stop-outs
metrics   SPEC §8 metrics per variant, regime, session
report    summary.json, run.json, every output file; report_md: table, report.md;
          trades_csv: trades.csv; charts: PNGs (chartdata: what they share with the HTML SVG)
"""
