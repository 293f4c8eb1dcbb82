"""Background work of the core: the tasks it spawned, and whether the daemon is stopping.

Components that start work nobody awaits (a deployment's load, a request-log
write, a chat turn stored while its socket closes) hand it to
:meth:`Background.spawn`, so that :meth:`Background.drain` can let it finish
at shutdown and nothing is lost. ``stopping`` is the one flag every component
reads to refuse new work once a shutdown has begun.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Coroutine


class Background:
    """Spawned tasks of one core, and its stopping flag."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self.stopping = False
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        """Run ``coro`` as a task that shutdown waits for; the task is returned."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def pending(self) -> list[asyncio.Task]:
        """Spawned tasks that have not finished yet."""
        return [t for t in self._tasks if not t.done()]

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the spawned tasks (state and log writes) to finish."""
        pending = self.pending()
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    @property
    def uptime_s(self) -> float:
        """Seconds since the core was built."""
        return time.time() - self.started_at
