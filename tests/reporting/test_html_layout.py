"""``report --html`` as a browser lays it out: headless Chromium at a 1280 px window (Debian's
``chromium``; ``.ci/run`` installs it). Nothing may be wider than the window (the rollout table
used to cut off "trades needed"), and no chart label may sit on another or out of its chart."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.reporting.chromium import chromium, measure
from tests.reporting.sample_page import sample_page

REQUIRE_ENV = "REQUIRE_CHROMIUM"  # set in CI (.ci/run): a missing Chromium fails, never skips


@pytest.fixture(scope="module")
def layout() -> dict[str, Any]:
    if chromium() is None:
        reason = "needs headless Chromium for the layout check: apt-get install -y chromium"
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"{reason}; {REQUIRE_ENV} is set")
        pytest.skip(reason)
    return measure(sample_page(), width=1280)


def test_nothing_is_wider_than_a_1280_px_window(layout: dict[str, Any]) -> None:
    assert layout["viewport"] == 1280
    assert layout["wide"] == [] and layout["scrollWidth"] <= 1280


def test_no_chart_label_overlaps_another_or_leaves_its_chart(layout: dict[str, Any]) -> None:
    assert layout["overlaps"] == []
    assert layout["outside"] == []
