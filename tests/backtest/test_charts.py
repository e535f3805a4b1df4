"""The backtest's equity chart over files far apart in time: a panel per period with exits,
not years of flat line between them (issue 23, item 8)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from tests.backtest.test_metrics import ROW
from traild.backtest.charts import PERIOD_GAP_MS, equity_figure, periods

DAY = 86_400_000


def _ms(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


def test_exits_a_week_or_more_apart_start_a_new_period() -> None:
    a, b = _ms(2012, 2, 1), _ms(2017, 6, 1)
    days = [a + k * DAY // 2 for k in range(20)]  # ten days, weekends included
    later = [b + k * DAY for k in range(5)]
    assert periods(days + later) == [(days[0], days[-1]), (later[0], later[-1])]
    assert periods([a, a + PERIOD_GAP_MS]) == [(a, a + PERIOD_GAP_MS)]  # a week: one period
    assert periods([]) == []
    # at most six panels: the widest gaps are cut first
    many = [_ms(2010 + k, 1, 1) for k in range(9)]
    assert len(periods(many)) == 6


def test_the_equity_chart_has_a_panel_per_file_period_spanning_only_it() -> None:
    first = [(_ms(2014, 5, 1) + k * 3_600_000, 2.0) for k in range(200)]  # about 8 days
    second = [(_ms(2017, 3, 6) + k * 3_600_000, -1.0) for k in range(100)]
    rows = [
        replace(ROW, variant=v, trade_id=i, entry_ts=t - 60_000, exit_ts=t, pnl_pips=p)
        for v in ("fixed+lock", "dynamic+lock")
        for i, (t, p) in enumerate(first + second)
    ]
    fig = equity_figure(rows, ["fixed+lock", "dynamic+lock"])
    try:
        assert len(fig.axes) == 2
        for ax, part in zip(fig.axes, (first, second), strict=True):
            lo, hi = (mdates.num2date(x).timestamp() * 1000 for x in ax.get_xlim())
            start, end = part[0][0], part[-1][0]
            assert lo <= start and end <= hi  # the whole period ...
            assert hi - lo < 1.1 * (end - start) + 2 * 3_600_000  # ... and nothing else
            assert len(ax.get_lines()) >= 2  # both variants, carried on across panels
        assert "2 periods" in fig.get_suptitle()
        assert fig.axes[1].get_title() == "2017-03-06 .. 2017-03-10"
    finally:
        plt.close(fig)
