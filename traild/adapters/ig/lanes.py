"""Serial lanes keyed by deal id: jobs of one deal run in order, different deals independently.

A stream reader hands its work here with ``submit_nowait`` and never waits: a job that waits
(a database outage behind a new position, a slow ``/markets``) holds up its own deal only. The
backlog is bounded: a full lane, or too many busy lanes, refuses the job (the caller logs it
and recovers by other means, e.g. a REST reconciliation).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

Job = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LaneStatistics:
    busy_lanes: int
    queued: int
    refused: int
    done: int


class KeyedLanes:
    """At most ``max_lanes`` keys in progress, ``per_lane`` jobs in each (the running one too)."""

    def __init__(self, *, max_lanes: int = 64, per_lane: int = 16) -> None:
        self._max_lanes = max_lanes
        self._per_lane = per_lane
        self._lanes: dict[str, deque[Job]] = {}
        self._nursery: trio.Nursery | None = None
        self._refused = 0
        self._done = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run lanes until cancelled (lanes are tasks of this nursery)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def submit_nowait(self, key: str, job: Job) -> bool:
        """Queue ``job`` behind the jobs of ``key``; False (refused) when the backlog is full
        or the lanes are not running."""
        if self._nursery is None:
            self._refused += 1
            return False
        lane = self._lanes.get(key)
        if lane is None:
            if len(self._lanes) >= self._max_lanes:
                self._refused += 1
                return False
            lane = self._lanes[key] = deque()
            lane.append(job)
            self._nursery.start_soon(self._drain, key, lane)
            return True
        if len(lane) >= self._per_lane:
            self._refused += 1
            return False
        lane.append(job)
        return True

    async def _drain(self, key: str, lane: deque[Job]) -> None:
        try:
            while lane:
                await lane[0]()
                lane.popleft()
                self._done += 1
        finally:
            self._lanes.pop(key, None)

    def statistics(self) -> LaneStatistics:
        queued = sum(len(lane) for lane in self._lanes.values())
        return LaneStatistics(len(self._lanes), queued, self._refused, self._done)
