"""Tasks: long operations (start, stop, restart a deployment) with an id whose state can be read.

The LLM Inference Service API's lifecycle calls answer at once with a ``task_id``; the work goes on
in the background and ``GET /api/tasks/{task_id}`` (and the task's events on
the broker, topic ``task.<id>``) tell how it went. Tasks are kept in memory:
they describe work of this process, and a restart ends that work anyway (the
deployment states it changed are in the store).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from llmd.core.events import EventBroker
from llmd.errors import LlmdError, NotFoundError

log = logging.getLogger(__name__)

_KEEP = 500  # finished tasks remembered for reading back


class TaskNotFoundError(NotFoundError):
    """No task has that id (or it finished long ago and was forgotten)."""

    code = "task_not_found"


@dataclass
class Task:
    """One background operation and its outcome."""

    id: str
    kind: str  # start | stop | restart | ...
    target: str  # what it acts on, e.g. the model's name
    state: str = "pending"  # pending | running | completed | failed
    message: str = ""
    result: Any = None
    error: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    _future: asyncio.Task | None = field(default=None, repr=False)

    async def wait(self, timeout: float | None = None) -> Task:
        """Wait until the task has finished (or ``timeout`` passed); returns itself."""
        if self._future is not None and not self._future.done():
            await asyncio.wait({self._future}, timeout=timeout)
        return self


class TaskTracker:
    """Runs coroutines as tasks and remembers their outcome."""

    def __init__(self, events: EventBroker) -> None:
        self.events = events
        self._tasks: collections.OrderedDict[str, Task] = collections.OrderedDict()

    def spawn(self, kind: str, target: str, work: Callable[[Task], Awaitable[Any]]) -> Task:
        """Start ``work(task)`` in the background; its return value becomes ``task.result``."""
        task = Task(id=f"task-{uuid.uuid4().hex[:12]}", kind=kind, target=target)
        self._tasks[task.id] = task
        while len(self._tasks) > _KEEP:
            oldest = next(iter(self._tasks.values()))
            if oldest.state in ("pending", "running"):
                break
            self._tasks.popitem(last=False)
        task._future = asyncio.ensure_future(self._run(task, work))
        return task

    async def _run(self, task: Task, work: Callable[[Task], Awaitable[Any]]) -> None:
        task.state, task.started_at = "running", time.time()
        self._publish(task)
        try:
            task.result = await work(task)
            task.state = "completed"
        except LlmdError as err:
            task.state, task.error = "failed", err.to_dict()
            task.message = task.message or err.message
        except asyncio.CancelledError:
            task.state, task.error = "failed", {"code": "cancelled", "message": "the task was cancelled"}
            raise
        except Exception:  # noqa: BLE001 - logged with traceback; the client reads only that it failed
            log.exception("task %s (%s %s) failed", task.id, task.kind, task.target)
            task.state = "failed"
            task.error = {"code": "internal_error", "message": "the task failed unexpectedly; see the daemon's log"}
        finally:
            task.finished_at = time.time()
            self._publish(task)

    def _publish(self, task: Task) -> None:
        self.events.publish(f"task.{task.id}", task)

    def get(self, task_id: str) -> Task:
        """The task with ``task_id``, or :class:`TaskNotFoundError`."""
        task = self._tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError(f"no task '{task_id}'", details={"task_id": task_id})
        return task

    def list(self, target: str | None = None) -> list[Task]:
        """Known tasks, newest first, optionally only those acting on ``target``."""
        return [t for t in reversed(self._tasks.values()) if target is None or t.target == target]

    async def shutdown(self) -> None:
        """Cancel tasks still running (the daemon is stopping)."""
        futures = [t._future for t in self._tasks.values() if t._future is not None and not t._future.done()]
        for f in futures:
            f.cancel()
        if futures:
            await asyncio.wait(futures, timeout=5)
