"""Pub/sub broker feeding SSE and WebSocket subscribers.

Publishers (downloads, deployments, tasks) call :meth:`EventBroker.publish`
from the event loop, or :meth:`EventBroker.publish_threadsafe` from a worker
thread. Each subscriber owns a bounded queue: a subscriber that cannot keep up
loses its oldest events rather than making the daemon's memory grow, and a
publisher never waits for a slow client.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue of ``(topic, payload)`` pairs for topics matching any of ``patterns``."""

    patterns: tuple[str, ...]
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=256))
    dropped: int = 0  # events lost because the queue was full

    def matches(self, topic: str) -> bool:
        """Whether ``topic`` is one this subscriber asked for."""
        return any(fnmatch.fnmatchcase(topic, p) for p in self.patterns)

    def offer(self, topic: str, payload: Any) -> None:
        """Queue an event, dropping the oldest when the subscriber is behind."""
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
                self.dropped += 1
        self.queue.put_nowait((topic, payload))

    async def get(self, timeout: float | None = None) -> tuple[str, Any] | None:
        """The next event, or ``None`` after ``timeout`` seconds without one."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    async def __aiter__(self) -> AsyncIterator[tuple[str, Any]]:
        while True:
            yield await self.queue.get()


class EventBroker:
    """Topics are dotted strings (``download.12``, ``deployment.3.log``); patterns use ``*``."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the event loop, for :meth:`publish_threadsafe`."""
        self._loop = loop

    def publish(self, topic: str, payload: Any) -> None:
        """Deliver ``payload`` to every subscriber whose pattern matches ``topic`` (loop thread only)."""
        for sub in list(self._subs):
            if sub.matches(topic):
                sub.offer(topic, payload)

    def publish_threadsafe(self, topic: str, payload: Any) -> None:
        """:meth:`publish` from any thread; a no-op before :meth:`bind` or after the loop closed."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.publish, topic, payload)

    @contextlib.contextmanager
    def subscribe(self, pattern: str, *more: str) -> Iterator[Subscription]:
        """``with broker.subscribe("download.*") as sub:`` - unsubscribed on exit; several patterns share
        one queue, in the order the events were published."""
        sub = Subscription((pattern, *more))
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open (for status and tests)."""
        return len(self._subs)
