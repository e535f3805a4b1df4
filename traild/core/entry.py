"""Which ticks belong to a trade: none before it opened, and not its entry tick.

A replay restarted from its beginning (after a crash) feeds a restored trade every tick of the
file, also those before it opened. ``traild simulate`` takes the first tick at/after the open
time as the entry tick, which is neither trailed nor exit-checked, and starts with the next one.
The paper broker and the trade actor apply the same rule through one ``EntryGate``, so a
restored trade is never closed by, nor trailed on, a price it could not have seen.
"""

from __future__ import annotations

from datetime import datetime


class EntryGate:
    """Admits the ticks of a trade opened at ``opened_at`` (None: every tick): never a tick
    from before the open.

    With ``skip_entry_tick`` (a trade restored into a replay that starts before it opened) the
    first tick at/after the open is its entry tick and is skipped too, when ticks from before
    the open were seen or the tick carries the open time itself. Live, it is not used: tick
    times there may be coarser than the open time (IG's UPDATE_TIME has whole seconds).
    """

    __slots__ = ("_before", "_open", "_skip_entry", "opened_at")

    @property
    def is_open(self) -> bool:
        """Every later tick is admitted."""
        return self._open

    @property
    def restored(self) -> bool:
        """A trade restored into a replay from its start (ticks before its open are expected)."""
        return self._skip_entry

    def __init__(self, opened_at: datetime | None, skip_entry_tick: bool = False) -> None:
        self.opened_at = opened_at
        self._open = opened_at is None
        self._before = False
        self._skip_entry = skip_entry_tick

    def open_now(self) -> None:
        """Admit every tick from now on (the trade was filled at the tick being processed)."""
        self._open = True

    def admits(self, ts: datetime) -> bool:
        if self._open:
            return True
        assert self.opened_at is not None
        if ts < self.opened_at:
            self._before = True
            return False
        self._open = True
        return not (self._skip_entry and (self._before or ts == self.opened_at))
