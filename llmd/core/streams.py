"""Open streams: SSE responses and WebSockets, counted in all and per client.

The HTTP layer acquires a slot for every stream it opens and releases it when
the stream ends; health, status and the metrics read the total. A client past
``limits.max_streams_per_client`` gets a 429 before anything is sent.
"""

from __future__ import annotations

from typing import Any, Callable

from llmd.errors import LlmdError


class TooManyStreamsError(LlmdError):
    """The client already has ``limits.max_streams_per_client`` streams or WebSockets open."""

    status = 429
    code = "too_many_streams"

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("headers", {})["Retry-After"] = "1"
        super().__init__(message, **kw)


class OpenStreams:
    """Streams open now: the total, and per client bounded by ``limit`` (0: no bound)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._open: dict[str, int] = {}

    def open_count(self, client: str) -> int:
        """Streams ``client`` has open now."""
        return self._open.get(client, 0)

    def acquire(self, client: str | None) -> Callable[[], None]:
        """Count one more open stream (for ``client``, if it is limited); returns the release.

        The release is idempotent. Past the client's limit this raises
        :class:`TooManyStreamsError` and counts nothing. ``client`` ``None``
        (the Unix socket, the local admin) is never limited.
        """
        limited = client is not None and self.limit > 0
        if limited:
            n = self._open.get(client, 0)  # type: ignore[arg-type]
            if n >= self.limit:
                raise TooManyStreamsError(
                    f"too many open streams: this client already has {n} streams or WebSockets open "
                    f"(limits.max_streams_per_client = {self.limit})",
                    details={"open": n, "limit": self.limit})
            self._open[client] = n + 1  # type: ignore[index]
        self.active += 1
        done = False

        def release() -> None:
            nonlocal done
            if done:
                return
            done = True
            self.active -= 1
            if not limited:
                return
            left = self._open.get(client, 1) - 1  # type: ignore[arg-type]
            if left <= 0:
                self._open.pop(client, None)  # type: ignore[arg-type]
            else:
                self._open[client] = left  # type: ignore[index]

        return release
