"""Seed 004 routes: download tasks, their progress over SSE, and WebSocket ``/ws/downloads``.

Progress comes from the event broker (topic ``download.<task_id>``), which the
download manager feeds at most a few times a second per task and on every
state change.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator, Literal

import pydantic
from pydantic import Field
from quart import websocket

from llmd.core import Core
from llmd.core.downloads import TERMINAL
from llmd.errors import LlmdError
from llmd.http.api import Dialect, StrictModel, parse_body, parse_query, validation_error
from llmd.http.manager.envelope import error_code, ok
from llmd.http.streaming import sse_json, sse_response

log = logging.getLogger(__name__)

_KEEPALIVE_S = 15.0


class StartBody(StrictModel):
    """What to download: a repo (or Ollama name[:tag]) and, optionally, which file."""

    model_id: str = Field(..., min_length=1, max_length=200, description="e.g. TheBloke/x-GGUF, or llama3:8b")
    source: str = Field("huggingface", max_length=32, description="huggingface or ollama")
    filename: str | None = Field(None, min_length=1, max_length=255,
                                 description="a GGUF file of the repo; default: by downloads.quantization_preference")
    quantization: str | None = Field(None, min_length=1, max_length=32, description="e.g. Q4_K_M")


class ListQuery(StrictModel):
    """Filter and page of the task list."""

    status: Literal["pending", "downloading", "paused", "completed", "failed", "cancelled"] | None = None
    page: int = Field(1, ge=1, le=100000)
    page_size: int = Field(20, ge=1, le=100)


class WsQuery(StrictModel):
    """Optionally follow one task only."""

    task_id: str | None = Field(None, max_length=64)


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the manager dialect."""
    downloads = core.downloads

    @d.route("/api/downloads/start", ("POST",), summary="Start a download", body=StartBody, auth="admin")
    async def download_start() -> Any:
        """Create a task (or return the unfinished one for the same request); it runs when a slot is free."""
        b = await parse_body(StartBody)
        task, created = await downloads.create(b.model_id, b.source, b.filename, b.quantization)
        msg = "下载任务已创建" if created else "a task for this download already exists"
        return ok({"task": task, "message": msg, "created": created}, msg)

    @d.route("/api/downloads/list", summary="List download tasks", query=ListQuery, auth="admin")
    async def download_list() -> Any:
        """Newest first; ``status`` filters; ``page_size`` at most 100."""
        q = parse_query(ListQuery)
        return ok(await downloads.list(q.status, q.page, q.page_size), "download tasks")

    @d.route("/api/downloads/queue", summary="The download queue", auth="admin")
    async def download_queue() -> Any:
        """Running tasks, waiting tasks in order, paused tasks, and the concurrency limit."""
        return ok(await downloads.queue(), "download queue")

    @d.route("/api/downloads/storage", summary="Storage for downloads", auth="admin")
    async def download_storage() -> Any:
        """Disk figures of the models directory and what unfinished downloads still need."""
        return ok(await downloads.storage(), "storage")

    @d.route("/api/downloads/events", summary="Progress of every download (SSE)", sse=True, auth="admin")
    async def download_events_all() -> Any:
        """``data: {"type": "snapshot", "tasks": [...]}``, then ``{"type": "progress"|"status", "task": {...}}``."""
        snapshot = (await downloads.list(None, 1, 100))["items"]
        return sse_response(core, _events(core, "download.*", {"type": "snapshot", "tasks": snapshot}, None))

    # Task ids are "task_<hex>". The rules spell the prefix out so that other names under
    # /api/downloads/ (a typo, an unknown action) are a plain 404, not a 405 from the id rule.
    @d.route("/api/downloads/task_<task_key>/events", summary="Progress of one download (SSE)", sse=True, auth="admin")
    async def download_events(task_key: str) -> Any:
        """A snapshot, then progress and state changes; ends with ``[DONE]`` once the task has finished."""
        task_id = f"task_{task_key}"
        task = await downloads.get(task_id)
        return sse_response(core, _events(core, f"download.{task_id}", {"type": "snapshot", "task": task}, task_id))

    @d.route("/api/downloads/task_<task_key>/pause", ("PUT",), summary="Pause a download", auth="admin")
    async def download_pause(task_key: str) -> Any:
        """The partial file stays; resume continues from it with an HTTP Range request."""
        task_id = f"task_{task_key}"
        return ok(await downloads.pause(task_id), "download paused")

    @d.route("/api/downloads/task_<task_key>/resume", ("PUT",), summary="Resume a download", auth="admin")
    async def download_resume(task_key: str) -> Any:
        """A paused or failed task is queued again and continues from its partial file."""
        task_id = f"task_{task_key}"
        return ok(await downloads.resume(task_id), "download resumed")

    @d.route("/api/downloads/task_<task_key>/cancel", ("PUT",), summary="Cancel a download", auth="admin")
    async def download_cancel(task_key: str) -> Any:
        """The task ends as cancelled and its partial files are deleted."""
        task_id = f"task_{task_key}"
        return ok(await downloads.cancel(task_id), "download cancelled")

    @d.route("/api/downloads/task_<task_key>", summary="One download task", auth="admin")
    async def download_get(task_key: str) -> Any:
        """State, progress, sizes, speed and ETA."""
        task_id = f"task_{task_key}"
        return ok(await downloads.get(task_id), "download task")

    @d.route("/api/downloads/task_<task_key>", ("DELETE",), summary="Delete a download task", auth="admin")
    async def download_delete(task_key: str) -> Any:
        """Stops it if it runs and deletes partial files; a registered model stays registered."""
        task_id = f"task_{task_key}"
        return ok(await downloads.delete(task_id), "download task deleted")

    @d.websocket("/ws/downloads", summary="Download progress over WebSocket", auth="admin")
    async def downloads_ws() -> None:
        """Sends ``{"type": "snapshot", "tasks": [...]}`` on connect, then ``{"type": "progress"|"status",
        "task_id", "task"}`` for every update; ``?task_id=`` follows one task. The client may send
        ``{"type": "ping"}`` (answered with ``pong``) or ``{"type": "subscribe", "task_id": ...}``."""
        await DownloadSocket(core).serve()


def _message(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    event = payload.get("event", "progress")
    task = {k: v for k, v in payload.items() if k != "event"}
    return {"type": event, "task_id": task.get("id"), "task": task}


async def _events(core: Core, pattern: str, first: dict[str, Any], task_id: str | None) -> AsyncIterator[str]:
    with core.events.subscribe(pattern) as sub:
        if task_id is not None:
            # Read again after subscribing, so no change between the two is lost.
            try:
                first = {"type": "snapshot", "task": await core.downloads.get(task_id)}
            except LlmdError:
                pass
        yield sse_json(first)
        if task_id is not None and first.get("task", {}).get("status") in TERMINAL:
            yield "data: [DONE]\n\n"
            return
        while True:
            item = await sub.get(timeout=_KEEPALIVE_S)
            if item is None:
                yield ": keep-alive\n\n"
                continue
            topic, payload = item
            msg = _message(topic, payload)
            yield sse_json(msg)
            if task_id is not None and (msg["type"] == "deleted" or msg["task"].get("status") in TERMINAL):
                yield "data: [DONE]\n\n"
                return


class DownloadSocket:
    """One ``/ws/downloads`` connection: forwards download events, answers pings."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.task_id: str | None = None

    async def send(self, obj: dict[str, Any]) -> None:
        """One JSON text frame."""
        await websocket.send(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

    async def serve(self) -> None:
        """Accept, send the snapshot, then forward events until the client goes."""
        try:
            self.task_id = WsQuery.model_validate(dict(websocket.args)).task_id
        except pydantic.ValidationError as exc:
            err = validation_error(exc)
            await websocket.accept()
            await self.send({"type": "error", "error": error_code(err), "message": err.message})
            await websocket.close(1008, "invalid query")
            return
        await websocket.accept()
        self.core.active_streams += 1
        try:
            with self.core.events.subscribe("download.*") as sub:
                await self.send(await self._snapshot())
                reader = asyncio.ensure_future(self._read())
                try:
                    while not reader.done():
                        getter = asyncio.ensure_future(sub.get(timeout=_KEEPALIVE_S))
                        done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                        if getter not in done:
                            getter.cancel()
                            await asyncio.gather(getter, return_exceptions=True)
                            break
                        item = getter.result()
                        if item is None:
                            continue
                        msg = _message(*item)
                        if self.task_id is None or msg["task_id"] == self.task_id:
                            await self.send(msg)
                finally:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
        finally:
            self.core.active_streams -= 1

    async def _snapshot(self) -> dict[str, Any]:
        if self.task_id is not None:
            try:
                return {"type": "snapshot", "tasks": [await self.core.downloads.get(self.task_id)]}
            except LlmdError as err:
                return {"type": "error", "error": error_code(err), "message": err.message, "tasks": []}
        return {"type": "snapshot", "tasks": (await self.core.downloads.list(None, 1, 100))["items"]}

    async def _read(self) -> None:
        """Client messages; returns when the socket closes."""
        while True:
            raw = await websocket.receive()
            try:
                msg = json.loads(raw)
            except (TypeError, ValueError):
                await self.send({"type": "error", "error": "INVALID_REQUEST", "message": "messages must be JSON"})
                continue
            kind = msg.get("type") if isinstance(msg, dict) else None
            if kind == "ping":
                await self.send({"type": "pong"})
            elif kind == "subscribe":
                tid = msg.get("task_id")
                self.task_id = tid if isinstance(tid, str) and tid else None
                await self.send(await self._snapshot())
            else:
                await self.send({"type": "error", "error": "INVALID_ACTION",
                                 "message": "send {\"type\": \"ping\"} or {\"type\": \"subscribe\", \"task_id\": ...}"})
