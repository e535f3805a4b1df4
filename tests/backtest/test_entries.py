"""Test entry generators: EMA 9/21 cross and 20-bar Donchian breakout on M15 closes."""

from __future__ import annotations

import numpy as np

from traild.backtest.entries import breakout_signs, ema, ema_cross_signs


def test_ema_follows_the_textbook_recursion() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    a = 2 / 4  # period 3
    expected = [1.0, 1.0 + a * 1.0]
    expected += [expected[-1] + a * (3.0 - expected[-1])]
    expected += [expected[-1] + a * (4.0 - expected[-1])]
    assert np.allclose(ema(x, 3), expected)


def test_ema_cross_signals_once_per_cross_in_its_direction() -> None:
    down = np.linspace(2.0, 1.0, 60)
    up = np.linspace(1.0, 2.0, 60)
    close = np.concatenate((down, up, up[::-1]))
    signs = ema_cross_signs(close)
    hits = np.flatnonzero(signs)
    assert signs[hits].tolist() == [1, -1]  # up-cross in the rally, down-cross after the top
    assert 60 < hits[0] < 120 < hits[1]


def test_breakout_signals_the_first_close_beyond_the_last_20_bars_only() -> None:
    close = np.array([1.0] * 25 + [1.5, 1.6, 1.7] + [1.65] * 5 + [0.5])
    high, low = close + 0.01, close - 0.01
    signs = breakout_signs(high, low, close)
    assert np.flatnonzero(signs).tolist() == [25, 33]
    assert signs[25] == 1 and signs[33] == -1  # 26, 27 continue the same breakout: no signal
