"""The ``traild_lease`` table in memory, on trio's clock (``traild.ports.Leases``).

It runs ``core.lease.claim``, the function the SQL adapter runs inside its transaction, with
trio's clock as the database's. ``latency`` gives each call its delays before and after
the database acts on it (a slow link, a partition, a caller paused by SIGSTOP: the request
leaves late, or the answer comes back late); ``down`` makes calls fail, as an outage does.
``gone`` lists pids whose process is dead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import trio

from traild.core.errors import StoreError
from traild.core.lease import Claim, Instance, LeaseRow, claim, renewable

T = TypeVar("T")


class MemoryLeases:
    def __init__(self, latency: Callable[[], tuple[float, float]] | None = None) -> None:
        self.rows: dict[str, LeaseRow] = {}
        self.latency = latency or (lambda: (0.0, 0.0))
        self.down = False
        self.gone: set[int] = set()
        self.calls = 0

    async def _call(self, act: Callable[[float], T]) -> T:
        """``act(now)`` after the first delay, its result after the second."""
        self.calls += 1
        before, after = self.latency()
        await trio.sleep(before)
        if self.down:
            raise StoreError("lease table unavailable (simulated outage)")
        result = act(trio.current_time())
        await trio.sleep(after)
        return result

    async def claim(self, account: str, me: Instance, ttl: float) -> Claim:
        def act(now: float) -> Claim:
            row = self.rows.get(account)
            gone = row is not None and row.pid in self.gone
            result = claim(row, account, me, now, ttl, holder_gone=gone)
            if result.ours:
                self.rows[account] = result.row
            return result

        return await self._call(act)

    async def renew(self, account: str, me: Instance, token: int, ttl: float) -> LeaseRow | None:
        def act(now: float) -> LeaseRow | None:
            row = self.rows.get(account)
            if row is None or not renewable(row, me, token):
                return None
            self.rows[account] = replace(row, expires=now + ttl)
            return self.rows[account]

        return await self._call(act)

    async def release(self, account: str, me: Instance, token: int) -> None:
        def act(now: float) -> None:
            row = self.rows.get(account)
            if row is not None and renewable(row, me, token):
                self.rows[account] = replace(row, expires=now)

        await self._call(act)

    def holder(self, account: str, now: float) -> LeaseRow | None:
        """The row of a lease valid at ``now`` (None: free or expired)."""
        row = self.rows.get(account)
        return row if row is not None and row.expires > now else None
