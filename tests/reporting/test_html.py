"""The HTML page on edge data: nothing at all, and text that needs escaping."""

from __future__ import annotations

from html.parser import HTMLParser

from tests.reporting.helpers import dyn
from traild.reporting.html import SECTIONS, render
from traild.reporting.rollout import rollout_status
from traild.settings import Settings


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
