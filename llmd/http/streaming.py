"""Server-Sent Events helpers shared by every dialect."""

from __future__ import annotations

import json
import weakref
from typing import Any, AsyncIterator

from quart import Response, g

from llmd.core import Core


def sse(data: str) -> str:
    """One SSE event. Text with newlines becomes several ``data:`` lines, as the SSE spec says."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "".join(f"data: {line}\n" for line in lines) + "\n"


def sse_json(obj: Any) -> str:
    """One SSE event carrying compact JSON (never contains a newline)."""
    return sse(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def stream_client() -> str | None:
    """Who an open stream is counted against: the verified principal, else the address; None exempts.

    Set by the auth hook of ``create_app`` for each request and WebSocket.
    """
    return g.get("llmd_client")


def sse_response(core: Core, events: AsyncIterator[str], headers: dict[str, str] | None = None) -> Response:
    """A streaming ``text/event-stream`` response.

    The stream is counted in ``core.active_streams`` while open, and against
    its client's ``limits.max_streams_per_client`` (a 429 in the dialect's
    envelope before anything is sent). When the client disconnects, Quart
    cancels the task iterating ``events``; the generation below it sees the
    cancellation and frees the engine.
    """
    release = core.auth.streams.acquire(stream_client())

    async def body() -> AsyncIterator[bytes]:
        core.active_streams += 1
        try:
            async for chunk in events:
                yield chunk.encode("utf-8")
        finally:
            core.active_streams -= 1
            release()

    stream = body()
    # A body that is never iterated (the client left before it started) still gives its slot back.
    weakref.finalize(stream, release)
    resp = Response(stream, status=200, content_type="text/event-stream; charset=utf-8")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"  # tell reverse proxies not to buffer
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    resp.timeout = None  # a long answer is not a stuck response
    return resp


async def render_stream(gen: Any, *, token: Any, end: Any, error: Any, start: Any = None) -> AsyncIterator[str]:
    """Render a core :class:`Generation` as SSE text in a dialect's format.

    ``token(text)``, ``end(result)`` and ``error(err)`` return the event text
    (or an iterable of them); ``start()`` may emit a first event. An error
    after the stream has started goes out as the dialect's final event, since
    the HTTP status can no longer change.
    """

    def _many(out: Any) -> list[str]:
        if out is None:
            return []
        return [out] if isinstance(out, str) else list(out)

    if start is not None:
        for chunk in _many(start()):
            yield chunk
    async for event in gen:
        for chunk in _many(token(event.text)):
            yield chunk
    result = gen.result
    outs = error(result.error) if result.error is not None else end(result)
    for chunk in _many(outs):
        yield chunk
