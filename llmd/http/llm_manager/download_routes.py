"""LLM Manager API routes: download tasks, their progress over SSE, and WebSocket ``/ws/downloads``.

Progress comes from the core's download manager, which reports each task at
most a few times a second and on every state change.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Literal

from pydantic import Field
from quart import websocket

from llmd.core import Core
from llmd.core.downloads import DownloadManager
from llmd.errors import LlmdError
from llmd.http.body import load_json_object, parse_args, parse_body, parse_query
from llmd.http.fields import PageNumber, PageSize, StrictModel
from llmd.http.format import pagination
from llmd.http.llm_manager import translate as t
from llmd.http.llm_manager.envelope import error_code, ok, render_error
from llmd.http.relay import until_closed
from llmd.http.routing import Dialect
from llmd.http.sse import follow_events, sse, sse_json, sse_response

log = logging.getLogger(__name__)


class StartBody(StrictModel):
    """What to download: a repo (or Ollama name[:tag]) and, optionally, which file."""

    model_id: str = Field(..., min_length=1, max_length=200,
                          pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?(:[A-Za-z0-9._-]+)?$",
                          description="owner/name (Hugging Face, e.g. TheBloke/x-GGUF) or name[:tag] (Ollama, "
                                      "e.g. llama3:8b)")
    source: str = Field("huggingface", max_length=32, description="huggingface or ollama")
    filename: str | None = Field(None, min_length=1, max_length=255,
                                 description="a GGUF file of the repo; default: by downloads.quantization_preference")
    quantization: str | None = Field(None, min_length=1, max_length=32, description="e.g. Q4_K_M")


class ListQuery(StrictModel):
    """Filter and page of the task list."""

    status: Literal["pending", "downloading", "paused", "completed", "failed", "cancelled"] | None = None
    page: PageNumber = 1
    page_size: PageSize = 20


class WsQuery(StrictModel):
    """Optionally follow one task only."""

    task_id: str | None = Field(None, max_length=64)


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the LLM Manager API."""
    downloads = core.downloads

    @d.route("/api/downloads/start", ("POST",), summary="Start a download", body=StartBody, auth="admin")
    async def download_start() -> Any:
        """Create a task (or return the unfinished one for the same request); it runs when a slot is free."""
        b = await parse_body(StartBody)
        task, created = await downloads.create(b.model_id, b.source, b.filename, b.quantization)
        msg = "下载任务已创建" if created else "a task for this download already exists"
        return ok({"task": t.download(task), "message": msg, "created": created}, msg)

    @d.route("/api/downloads/list", summary="List download tasks", query=ListQuery, auth="admin")
    async def download_list() -> Any:
        """Newest first; ``status`` filters; ``page_size`` at most 100."""
        q = parse_query(ListQuery)
        page = await downloads.list(q.status, q.page, q.page_size)
        items = [t.download(task) for task in page.items]
        return ok({"items": items, "tasks": items, "pagination": pagination(page)}, "download tasks")

    @d.route("/api/downloads/queue", summary="The download queue", auth="admin")
    async def download_queue() -> Any:
        """Running tasks, waiting tasks in order, paused tasks, and the concurrency limit."""
        return ok(t.download_queue(await downloads.queue()), "download queue")

    @d.route("/api/downloads/storage", summary="Storage for downloads", auth="admin")
    async def download_storage() -> Any:
        """Disk figures of the models directory and what unfinished downloads still need."""
        return ok(t.storage(await downloads.storage()), "storage")

    def events(feed: Any, one: bool, path: str) -> Any:
        async def stream() -> Any:
            async for chunk in follow_events(feed, lambda e: sse_json(t.download_event(e, one=one)),
                                             lambda err: sse_json(render_error(err, path)[0]), "download progress"):
                yield chunk
            if one:
                yield sse("[DONE]")  # the task has finished (or was deleted)
        return stream()

    @d.route("/api/downloads/events", summary="Progress of every download (SSE)", sse=True, auth="admin")
    async def download_events_all() -> Any:
        """``data: {"type": "snapshot", "tasks": [...]}``, then ``{"type": "progress"|"status", "task": {...}}``."""
        return sse_response(core.streams, events(await downloads.follow(None), False, "/api/downloads/events"))

    # Task ids are "task_<hex>". The rules spell the prefix out so that other names under
    # /api/downloads/ (a typo, an unknown action) are a plain 404, not a 405 from the id rule.
    @d.route("/api/downloads/task_<task_key>/events", summary="Progress of one download (SSE)", sse=True, auth="admin")
    async def download_events(task_key: str) -> Any:
        """A snapshot, then progress and state changes; ends with ``[DONE]`` once the task has finished."""
        task_id = f"task_{task_key}"
        feed = await downloads.follow(task_id)  # an unknown task is a 404 before the stream starts
        return sse_response(core.streams, events(feed, True, f"/api/downloads/{task_id}/events"))

    @d.route("/api/downloads/task_<task_key>/pause", ("PUT",), summary="Pause a download", auth="admin")
    async def download_pause(task_key: str) -> Any:
        """The partial file stays; resume continues from it with an HTTP Range request."""
        return ok(t.download(await downloads.pause(f"task_{task_key}")), "download paused")

    @d.route("/api/downloads/task_<task_key>/resume", ("PUT",), summary="Resume a download", auth="admin")
    async def download_resume(task_key: str) -> Any:
        """A paused or failed task is queued again and continues from its partial file."""
        return ok(t.download(await downloads.resume(f"task_{task_key}")), "download resumed")

    @d.route("/api/downloads/task_<task_key>/cancel", ("PUT",), summary="Cancel a download", auth="admin")
    async def download_cancel(task_key: str) -> Any:
        """The task ends as cancelled and its partial files are deleted."""
        return ok(t.download(await downloads.cancel(f"task_{task_key}")), "download cancelled")

    @d.route("/api/downloads/task_<task_key>", summary="One download task", auth="admin")
    async def download_get(task_key: str) -> Any:
        """State, progress, sizes, speed and ETA."""
        return ok(t.download(await downloads.get(f"task_{task_key}")), "download task")

    @d.route("/api/downloads/task_<task_key>", ("DELETE",), summary="Delete a download task", auth="admin")
    async def download_delete(task_key: str) -> Any:
        """Stops it if it runs and deletes partial files; a registered model stays registered."""
        task_id = f"task_{task_key}"
        await downloads.delete(task_id)
        return ok({"id": task_id, "task_id": task_id, "deleted": True}, "download task deleted")

    @d.websocket("/ws/downloads", summary="Download progress over WebSocket", auth="admin")
    async def downloads_ws() -> None:
        """Sends ``{"type": "snapshot", "tasks": [...]}`` on connect, then ``{"type": "progress"|"status",
        "task_id", "task"}`` for every update; ``?task_id=`` follows one task. The client may send
        ``{"type": "ping"}`` (answered with ``pong``) or ``{"type": "subscribe", "task_id": ...}``."""
        await DownloadSocket(downloads).serve()


class DownloadSocket:
    """One ``/ws/downloads`` connection: forwards download events, answers pings."""

    def __init__(self, downloads: DownloadManager) -> None:
        self.downloads = downloads
        self.task_id: str | None = None

    async def send(self, obj: dict[str, Any]) -> None:
        """One JSON text frame."""
        await websocket.send(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

    async def serve(self) -> None:
        """Accept, send the snapshot, then forward events until the client goes."""
        try:
            self.task_id = parse_args(WsQuery, websocket.args).task_id
        except LlmdError as err:
            await websocket.accept()
            await self.send({"type": "error", "error": error_code(err), "message": err.message})
            await websocket.close(1008, "invalid query")
            return
        await websocket.accept()
        feed = await self.downloads.follow(None)
        reader = asyncio.ensure_future(self._read())
        try:
            await self._forward(feed, reader)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await feed.aclose()

    async def _forward(self, feed: Any, reader: asyncio.Task) -> None:
        """Send the feed's snapshot (or the followed task's) and each change, until the client goes."""
        async for event in until_closed(feed.__anext__, reader):
            if event is None:
                continue
            if event.kind == "snapshot":
                await self.send(await self._snapshot())
            elif self.task_id is None or event.tasks[0].id == self.task_id:
                await self.send(t.download_event(event))

    async def _snapshot(self) -> dict[str, Any]:
        if self.task_id is not None:
            try:
                return {"type": "snapshot", "tasks": [t.download(await self.downloads.get(self.task_id))]}
            except LlmdError as err:
                return {"type": "error", "error": error_code(err), "message": err.message, "tasks": []}
        return {"type": "snapshot", "tasks": [t.download(x) for x in (await self.downloads.list(None, 1, 100)).items]}

    async def _read(self) -> None:
        """Client messages; returns when the socket closes."""
        while True:
            raw = await websocket.receive()
            try:
                msg = load_json_object(raw, what="the message", field="message")
            except LlmdError as err:
                await self.send({"type": "error", "error": error_code(err), "message": err.message})
                continue
            kind = msg.get("type")
            if kind == "ping":
                await self.send({"type": "pong"})
            elif kind == "subscribe":
                tid = msg.get("task_id")
                self.task_id = tid if isinstance(tid, str) and tid else None
                await self.send(await self._snapshot())
            else:
                await self.send({"type": "error", "error": "INVALID_ACTION",
                                 "message": "send {\"type\": \"ping\"} or {\"type\": \"subscribe\", \"task_id\": ...}"})
