"""A crash fence for simulations: once a runtime "process" is killed, nothing it does counts.

Cancelling a trio nursery is not a SIGKILL: a task that was already woken (say, with the
broker's answer) runs on until its next checkpoint and could still write to the store or send
to the broker. The fake broker and the simulation store ask the fence whether the calling task
descends from a killed runtime root, and drop the call if so — a dead process writes nothing.
"""

from __future__ import annotations

import trio


class Fence:
    """Remembers the root tasks of killed runtimes; ``dead()`` tells if the caller is one."""

    def __init__(self) -> None:
        self._killed: set[int] = set()  # id() of killed root tasks (kept alive in _roots)
        self._roots: list[trio.lowlevel.Task] = []
        self.dropped = 0  # calls refused because they came from a dead runtime

    def kill(self, root: trio.lowlevel.Task) -> None:
        """Every task under ``root`` (a runtime's top task) is dead from now on."""
        self._roots.append(root)
        self._killed.add(id(root))

    def dead(self) -> bool:
        """True when the current task descends from a killed root (False outside trio)."""
        if not self._killed:
            return False
        try:
            task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        except RuntimeError:
            return False
        while task is not None:
            if id(task) in self._killed:
                self.dropped += 1
                return True
            nursery = task.parent_nursery
            task = None if nursery is None else nursery.parent_task
        return False
