"""The HTML page on edge data: nothing at all, and text that needs escaping."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from tests.reporting.helpers import dyn
from traild.config.settings import Settings
from traild.reporting.html import SECTIONS, render
from traild.reporting.rollout import rollout_status
from traild.reporting.svg import bar_chart, nice_ticks, tick_label


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        if tag == "section" and ident:
            self.ids.append(ident)


def test_an_empty_database_still_gives_every_section() -> None:
    status = rollout_status(Settings(), [])
    report = {"open": 0, "closed": 0, "methods": {}, "fallback_reasons": {}, "trades": []}
    page = render(report, status, [], None, None)
    parser = _Ids()
    parser.feed(page)
    assert parser.ids == list(SECTIONS) and "no data" in page and "nan" not in page.lower()


def test_text_from_the_database_is_escaped() -> None:
    report = {"open": 0, "closed": 1, "methods": {"<b>x</b>": 1}, "fallback_reasons": {},
              "trades": []}  # fmt: skip
    page = render(report, rollout_status(Settings(), dyn([1.0])), dyn([1.0]), None, None)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


@pytest.mark.parametrize(
    ("lo", "hi", "ticks"),
    [
        (0.0, 2.4, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]),
        (-234.9, 0.0, [-250.0, -200.0, -150.0, -100.0, -50.0, 0.0]),
        (-4.481, 11.6, [-5.0, -2.5, 0.0, 2.5, 5.0, 7.5, 10.0, 12.5]),
        (0.0, 210.0, [0.0, 50.0, 100.0, 150.0, 200.0, 250.0]),
        (-57.7, 942.7, [-200.0, 0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]),
        (3.0, 3.0, [2.5, 2.75, 3.0, 3.25, 3.5]),
    ],
)
def test_axes_are_labelled_at_nice_values_that_cover_the_data(
    lo: float, hi: float, ticks: list[float]
) -> None:
    got = nice_ticks(lo, hi)
    assert got == ticks and got[0] <= lo and got[-1] >= hi


def test_chart_labels_are_the_nice_ticks_never_the_data_extremes() -> None:
    # the old axis labelled min, mid, max and 0: "-116.4", "-234.9", "2.4" on "0"
    chart = bar_chart("x", ["a", "b"], {"s": [-234.9, 2.4]})
    labels = re.findall(r'text-anchor="end" font-size="10">([^<]+)<', chart)
    assert labels == ["\u2212250", "\u2212200", "\u2212150", "\u2212100", "\u221250", "0", "50"]
    assert tick_label(0.25, [0.0, 0.25, 0.5]) == "0.25" and tick_label(1.5, [1.0, 1.5]) == "1.5"
