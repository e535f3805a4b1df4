"""The paper broker (``broker.py``): an in-memory account that fills, stops out and amends like
IG would, its book in ``book.py`` and its misbehaviour on purpose in ``faults.py``."""

from traild.adapters.paper.broker import PaperBroker, PaperStatistics

__all__ = ["PaperBroker", "PaperStatistics"]
