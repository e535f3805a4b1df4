"""The market regime computes only the last efficiency ratio (issue 24): the same float as the
whole series' last value."""

from __future__ import annotations

import random

from traild.core.regime import _last_efficiency_ratio, efficiency_ratio


def test_the_last_efficiency_ratio_is_the_series_last_value_exactly() -> None:
    rng = random.Random(24)
    for n in (0, 1, 5, 10, 11, 12, 50, 300):
        for period in (1, 3, 10):
            close = [1.1 + rng.gauss(0, 1e-4) for _ in range(n)]
            if n > 20:
                close[-period - 1 :] = [close[-1]] * (period + 1)  # a flat stretch: 0.0
            expected = efficiency_ratio(close, period)[-1] if close else None
            assert _last_efficiency_ratio(close, period) == expected
