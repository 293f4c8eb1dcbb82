"""Server-Sent Events for every API: framing, the streaming response, generations and followed feeds."""

from __future__ import annotations

import json
import logging
import weakref
from typing import Any, AsyncIterator, Callable, Iterable

from quart import Response, g

from llmd.core.deployment import Generation
from llmd.core.streams import OpenStreams
from llmd.core.types import TokenEvent
from llmd.errors import InternalError, LlmdError

log = logging.getLogger(__name__)

KEEP_ALIVE = ": keep-alive\n\n"  # an SSE comment: keeps proxies from closing a quiet stream
Events = str | Iterable[str] | None


def sse(data: str) -> str:
    """One SSE event. Text with newlines becomes several ``data:`` lines, as the SSE spec says."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "".join(f"data: {line}\n" for line in lines) + "\n"


def sse_json(obj: Any) -> str:
    """One SSE event carrying compact JSON (never contains a newline)."""
    return sse(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def stream_client() -> str | None:
    """Who an open stream is counted against: the verified principal, else the address; None exempts.

    Set by the auth middleware for each request and WebSocket.
    """
    return g.get("llmd_client")


def sse_response(streams: OpenStreams, events: AsyncIterator[str], headers: dict[str, str] | None = None, *,
                 content_type: str = "text/event-stream; charset=utf-8") -> Response:
    """A streaming ``text/event-stream`` response, counted in ``streams`` while it is open.

    ``content_type`` names another line format streamed the same way (the
    Ollama API's NDJSON).

    Past the client's ``limits.max_streams_per_client`` it is a 429 in the
    dialect's envelope before anything is sent. When the client disconnects,
    Quart cancels the task iterating ``events``; a generation below it sees
    the cancellation and frees the engine.
    """
    release = streams.acquire(stream_client())

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in events:
                yield chunk.encode("utf-8")
        finally:
            release()

    stream = body()
    # A body that is never iterated (the client left before it started) still gives its slot back.
    weakref.finalize(stream, release)
    resp = Response(stream, status=200, content_type=content_type)
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"  # tell reverse proxies not to buffer
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    resp.timeout = None  # a long answer is not a stuck response
    return resp


def _many(out: Events) -> list[str]:
    if out is None:
        return []
    return [out] if isinstance(out, str) else list(out)


async def render_stream(gen: Generation, *, token: Callable[[str], Events], end: Callable[[Any], Events],
                        error: Callable[[LlmdError], Events], start: Callable[[], Events] | None = None,
                        other: Callable[[Any], Events] | None = None) -> AsyncIterator[str]:
    """A core generation as SSE text in a dialect's format.

    ``token(text)``, ``end(result)`` and ``error(err)`` return the event text
    (or several); ``start()`` may emit a first event. ``other(event)``, when
    given, renders every event that is not plain text of the first choice
    (tool calls, logprobs, other choices); without it those write nothing
    but their text. The events of the tokens that arrived together go out as
    one write. An error after the stream has started goes out as the
    dialect's final event, since the HTTP status can no longer change.
    """
    head = "".join(_many(start())) if start is not None else ""

    def one(event: Any) -> Events:
        if other is not None and (type(event) is not TokenEvent or event.index or event.logprobs):
            return other(event)
        return token(event.text) if event.text else None

    async for batch in gen.batches():
        text = "".join(chunk for event in batch for chunk in _many(one(event)))
        if head:
            text, head = head + text, ""
        if text:
            yield text
    result = gen.result
    assert result is not None
    tail = "".join(_many(error(result.error) if result.error is not None else end(result)))
    if head or tail:
        yield head + tail


async def follow_events(items: AsyncIterator[Any], render: Callable[[Any], Events],
                        error: Callable[[LlmdError], Events], what: str) -> AsyncIterator[str]:
    """A followed feed (a log, download progress) as SSE: ``None`` items become keep-alive comments.

    An error while following (the model was deleted, the store failed) ends
    the stream with one event in the dialect's envelope; an unexpected one is
    logged with its traceback and sent as an internal error, never as text.
    """
    try:
        async for item in items:
            if item is None:
                yield KEEP_ALIVE
                continue
            for chunk in _many(render(item)):
                yield chunk
    except LlmdError as err:
        for chunk in _many(error(err)):
            yield chunk
    except Exception:  # noqa: BLE001 - logged with traceback, never sent
        log.exception("following %s failed", what)
        for chunk in _many(error(InternalError(f"following {what} failed; see the daemon's log"))):
            yield chunk
