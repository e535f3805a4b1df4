"""The backtest's equity chart over files far apart in time: a panel per period with exits,
not years of flat line between them (issue 23, item 8); and how the charts are written."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure
from PIL import Image

from tests.backtest.test_metrics import ROW
from traild.backtest.charts import PERIOD_GAP_MS, equity_figure, periods, write_charts
from traild.backtest.engine import BacktestRequest, run_backtest
from traild.backtest.report import pairs, summary
from traild.config.settings import load

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


def test_each_chart_is_drawn_once_and_written_as_the_same_opaque_png(
    synthetic_eurusd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24: ``savefig`` after a layout drew every figure twice (a dry run first); the
    charts are drawn once, as RGB PNGs without text chunks, the same bytes on every run."""
    result = run_backtest(
        load(None, {}), BacktestRequest(ticks=(str(synthetic_eurusd),), random=40, seed=2)
    )
    summary_ = summary(result)
    names = [v.name for v in result.variants]
    draws: list[Figure] = []
    draw = Figure.draw

    def counted(fig: Figure, renderer: object) -> None:
        draws.append(fig)
        draw(fig, renderer)  # type: ignore[arg-type]

    monkeypatch.setattr(Figure, "draw", counted)
    written = []
    for run in ("a", "b"):
        out = tmp_path / run
        out.mkdir()
        written.append(write_charts(result.rows, names, summary_, out, pairs(result)))
    assert [p.name for p in written[0]] == [
        "equity.png", "pnl_distribution.png", "by_regime.png", "dynamic_minus_fixed.png"
    ]  # fmt: skip
    assert len(draws) == 8 and len(set(map(id, draws))) == 8  # each figure drawn once
    for a, b in zip(*written, strict=True):
        assert a.read_bytes() == b.read_bytes()
        with Image.open(a) as image:
            assert image.mode == "RGB" and image.format == "PNG"
            assert image.size == {"equity.png": (1000, 500), "by_regime.png": (1500, 500)}.get(
                a.name, image.size
            )
            assert set(image.info) <= {"dpi"}  # no Software or other text chunk
