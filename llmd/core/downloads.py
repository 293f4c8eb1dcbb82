"""Model downloads: a queue of tasks that fetch GGUF files from a hub, resumably, and register them.

The truth about a task is its store row plus the files on disk. A transfer
writes ``<file>.partial``; its length is where the next attempt resumes, with
an HTTP ``Range`` request, whether the transfer stopped for a pause, a network
error, a daemon restart or a ``kill -9``. A finished file is hashed (sha256
against the hub's LFS metadata or the Ollama digest), fsynced and renamed into
place; then the task enters the ``register`` phase (recorded in its row), the
model is registered, and only then is the task ``completed``. A crash between
the rename and the registration is finished by :meth:`DownloadManager.start`.

The byte shovelling runs on the manager's own threads (blocking httpx, file
writes, hashing), never on the event loop; an asyncio task per transfer
reports progress on the event broker (topic ``download.<task_id>``), at most
every ``downloads.progress_interval_s`` and on every state change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import httpx

from llmd.config import Config
from llmd.core.background import Background
from llmd.core.events import EventBroker
from llmd.core.hub import Hub, check_hub_id, normalize_source, ollama_display_id, parse_ollama_ref, quantization_of
from llmd.core.registry import Model, Registry
from llmd.core.types import Page
from llmd.errors import (
    ChecksumMismatchError,
    DownloadNotFoundError,
    HubUnavailableError,
    InsufficientStorageError,
    InternalError,
    InvalidActionError,
    LlmdError,
    ModelExistsError,
    ModelNotFoundError,
    ShuttingDownError,
    ValidationError,
)

log = logging.getLogger(__name__)

STATES = ("pending", "downloading", "paused", "completed", "failed", "cancelled")
TERMINAL = ("completed", "failed", "cancelled")
_DISK_CHECK_EVERY = 8 * 1024 * 1024  # bytes written between two free-space checks
_FSYNC_EVERY = 32 * 1024 * 1024  # so a power cut loses little of a partial file
_PERSIST_EVERY_S = 2.0  # how often a running task's byte count is written to its row
_MIB = 1 << 20
KEEPALIVE_S = 15.0  # a follower hears at least this often, so proxies keep a quiet stream open


def parse_pull_ref(ref: str) -> tuple[str, str, str | None]:
    """An Ollama client's model name as (source, model id, quantization)."""
    for prefix in ("hf.co/", "huggingface.co/"):
        if ref.lower().startswith(prefix):
            repo, _, quant = ref[len(prefix):].partition(":")
            if repo.count("/") != 1 or not all(repo.split("/")):
                raise ValidationError(f"model: '{ref}' must be hf.co/<owner>/<repo>[:<quantization>]", field="model")
            return "huggingface", repo, (quant or None) if quant.lower() != "latest" else None
    return "ollama", ref, None


class _Stopped(Exception):
    """The transfer was asked to stop (pause, cancel, delete, shutdown)."""


class _Retry(Exception):
    """A failure worth another attempt (5xx, a cut connection, a short body)."""


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class DownloadFile:
    """One file of a download: its name in the repository, size, sha256 and where it lands."""

    name: str
    size: int
    sha256: str | None
    path: str


@dataclass(frozen=True)
class DownloadTask:
    """A download task as the APIs show it: state, progress, speed and ETA; sizes in bytes, times in Unix seconds."""

    id: str
    model_id: str
    source: str
    filename: str | None
    quantization: str | None
    revision: str | None
    status: str  # pending | downloading | paused | completed | failed | cancelled
    phase: str  # transfer | verify | register
    downloaded_bytes: int
    total_bytes: int
    speed_bps: float
    eta_s: float | None
    files: list[DownloadFile]
    model_name: str | None
    message: str | None
    error: str | None
    error_code: str | None
    error_details: Any
    created_at: float | None
    updated_at: float | None
    started_at: float | None
    finished_at: float | None
    position: int | None = None  # place in the waiting line, for a pending task in the queue view

    @property
    def progress(self) -> float:
        """Percent done."""
        if self.total_bytes:
            return self.downloaded_bytes / self.total_bytes * 100
        return 100.0 if self.status == "completed" else 0.0

    @property
    def finished(self) -> bool:
        """True once the task has ended (completed, failed or cancelled)."""
        return self.status in TERMINAL


@dataclass(frozen=True)
class DownloadEvent:
    """A change of download tasks: ``progress``, ``status``, ``deleted``, or the ``snapshot`` a follower starts with."""

    kind: str
    tasks: list[DownloadTask]


@dataclass(frozen=True)
class DownloadQueue:
    """What runs now, what waits (in order), what is paused, and the concurrency limit."""

    max_concurrent: int
    active: list[DownloadTask]
    pending: list[DownloadTask]
    paused: list[DownloadTask]
    total_speed_bps: float


@dataclass(frozen=True)
class Storage:
    """Disk figures of the models directory, and what unfinished downloads hold or still need (bytes)."""

    models_dir: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    models_bytes: int
    partial_bytes: int
    reserved_bytes: int
    margin_bytes: int

    @property
    def usage_percent(self) -> float:
        """Used over total, in percent."""
        return self.used_bytes / self.total_bytes * 100 if self.total_bytes else 0.0

    @property
    def available_for_downloads_bytes(self) -> int:
        """Free space less what unfinished downloads still need and the safety margin."""
        return max(0, self.free_bytes - self.reserved_bytes - self.margin_bytes)


@dataclass
class Transfer:
    """The in-memory side of one running task: its stop flag and live byte count."""

    task_id: str
    total: int
    downloaded: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None  # pause | cancel | delete | shutdown
    speed: float = 0.0  # bytes/s, smoothed
    phase: str = "transfer"  # transfer | verify | register
    _last: tuple[float, int] = (0.0, 0)

    def request_stop(self, reason: str) -> None:
        """Ask the thread to stop at the next chunk."""
        if self.reason is None:
            self.reason = reason
        self.stop.set()

    def sample(self) -> None:
        """Update the smoothed speed from the byte count."""
        now = time.monotonic()
        last_t, last_n = self._last
        if last_t:
            dt = now - last_t
            if dt > 0:
                rate = max(0, self.downloaded - last_n) / dt
                self.speed = rate if self.speed == 0 else 0.6 * self.speed + 0.4 * rate
        self._last = (now, self.downloaded)


class DownloadManager:
    """Download tasks: create, run a bounded number at once, pause, resume, cancel, report, recover."""

    def __init__(self, config: Config, repo: Any, *, registry: Registry, hub: Hub, events: EventBroker,
                 background: Background) -> None:
        self.config = config
        self.repo = repo  # llmd.store.downloads.DownloadRepo
        self.registry = registry
        self.hub = hub
        self.events = events
        self.background = background
        self._running: dict[str, Transfer] = {}
        self._workers: dict[str, asyncio.Task] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, config.downloads.max_concurrent),
                                        thread_name_prefix="llmd-download")
        self._kick_lock = asyncio.Lock()
        self._closing = False

    @property
    def models_dir(self) -> Path:
        """Where downloaded files land."""
        return self.config.models_dir

    # -- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        """Recover after a restart or crash: finish registrations, requeue interrupted transfers, start the queue."""
        for row in await self.repo.in_states(("pending", "downloading")):
            if row["phase"] == "register":
                try:
                    await self._finish(row)
                except LlmdError as err:
                    await self._fail(row["id"], err)
                except Exception:  # noqa: BLE001 - one bad row must not stop the daemon
                    log.exception("recovering download %s failed", row["id"])
                    await self._fail(row["id"], InternalError("recovering the download failed; see the log"))
            elif row["status"] == "downloading":
                await self.repo.set_status_if(
                    row["id"], ("downloading",), "pending", message="interrupted; resuming from the partial file")
                log.info("download %s (%s) was interrupted; it resumes", row["id"], row["model_id"])
        await self._kick()

    async def shutdown(self) -> None:
        """Stop transfers cleanly: partial files are flushed and the tasks resume on the next start."""
        self._closing = True
        for t in list(self._running.values()):
            t.request_stop("shutdown")
        workers = [w for w in self._workers.values() if not w.done()]
        if workers:
            await asyncio.wait(workers, timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- requests -----------------------------------------------------------
    async def create(self, model_id: str, source: str | None, filename: str | None = None,
                     quantization: str | None = None) -> tuple[DownloadTask, bool]:
        """Start (or find) the download of ``model_id``; returns the task and whether it is new.

        The hub is asked for the file list now, so a repository or file that
        does not exist is a 4xx here rather than a failed task later. The
        same request while an earlier task is unfinished (or finished and its
        model still registered) returns that task: re-running a pull attaches.
        """
        if self.background.stopping or self._closing:
            raise ShuttingDownError()
        src = normalize_source(source)
        check_hub_id(model_id, "model_id")
        if filename is not None and (filename.startswith("/") or ".." in filename.split("/")):
            raise ValidationError("filename must be a file name inside the repository", field="filename")
        if src == "ollama":
            model_id = ollama_display_id(*parse_ollama_ref(model_id))
        existing = await self.repo.find_active(model_id, src, filename, quantization)
        if existing is not None:
            if existing["status"] != "completed":
                return self._view(existing), False
            model = await self.registry.find(existing["model_name"] or "")
            if model is not None and Path(model.path).exists():
                return self._view(existing), False
        plan = await self.hub.plan(model_id, src, filename, quantization)
        task_id = f"task_{uuid.uuid4().hex[:12]}"
        row = await self.repo.insert(
            task_id, plan.model_id, src, filename=filename, quantization=quantization, revision=plan.revision,
            files=[f.to_dict() for f in plan.files], total_bytes=plan.total_bytes)
        log.info("download %s: %s from %s (%s, %d bytes)", task_id, plan.model_id, src,
                 ", ".join(f.name for f in plan.files), plan.total_bytes)
        self._publish(row, "status")
        await self._kick()
        return self._view(await self._row(task_id)), True

    async def pull(self, ref: str) -> AsyncIterator[DownloadTask]:
        """Download a model named as Ollama clients name one, and follow it: its task at each change.

        ``hf.co/{owner}/{repo}[:{quant}]`` (or ``huggingface.co/...``) is a
        Hugging Face repository, ``quant`` picking the file (``latest`` or
        none: ``downloads.quantization_preference``); any other name is one of
        the Ollama registry's (``name[:tag]``, tag ``latest`` by default). A
        model already downloaded is not fetched again, and a paused or failed
        task of the same model resumes. Once completed, ``ref`` names the
        model (an alias where its registry name differs). Errors the hub
        raises (an unknown model) come before anything is followed.
        """
        source, model_id, quant = parse_pull_ref(ref)
        task, _ = await self.create(model_id, source, None, quant)
        if task.status in ("paused", "failed"):
            task = await self.resume(task.id)
        events = await self.follow(task.id)
        return self._pulling(ref, task.id, events)

    async def _pulling(self, ref: str, task_id: str,
                       events: AsyncIterator[DownloadEvent | None]) -> AsyncIterator[DownloadTask]:
        last: DownloadTask | None = None
        async for event in events:
            if event is None or not event.tasks:
                continue  # a keep-alive: nothing changed
            last = event.tasks[0]
            if last.finished:
                break
            yield last
        if last is None or last.id != task_id:
            last = await self.get(task_id)
        if last.status == "completed" and last.model_name and await self.registry.find(ref) is None:
            try:
                await self.registry.add_alias(ref, last.model_name)
            except LlmdError as err:  # a name llmd cannot take as an alias: the model keeps its own name
                log.info("pull %s: not aliased to %s: %s", ref, last.model_name, err.message)
        yield last

    async def get(self, task_id: str) -> DownloadTask:
        """One task."""
        return self._view(await self._row(task_id))

    async def list(self, status: str | None, page: int, page_size: int) -> Page[DownloadTask]:
        """A page of tasks, newest first; ``status`` filters."""
        if status is not None and status not in STATES:
            raise ValidationError(f"status must be one of {', '.join(STATES)}", field="status")
        total = await self.repo.count(status)
        rows = await self.repo.list(status, limit=page_size, offset=(page - 1) * page_size)
        return Page([self._view(r) for r in rows], total, page, page_size)

    async def queue(self) -> DownloadQueue:
        """What runs now, what waits (in order), and what is paused."""
        rows = await self.repo.in_states(("pending", "downloading", "paused"))
        active = [self._view(r) for r in rows if r["status"] == "downloading"]
        pending = [dataclasses.replace(self._view(r), position=i + 1)
                   for i, r in enumerate(r for r in rows if r["status"] == "pending")]
        paused = [self._view(r) for r in rows if r["status"] == "paused"]
        return DownloadQueue(self.config.downloads.max_concurrent, active, pending, paused,
                             sum(t.speed for t in self._running.values()))

    async def storage(self) -> Storage:
        """Disk figures for the models directory, and what downloads hold or still need."""
        rows = await self.repo.in_states(("pending", "downloading", "paused"))
        reserved = sum(max(0, r["total_bytes"] - self._view(r).downloaded_bytes) for r in rows)
        usage, models, partial = await asyncio.to_thread(self._storage_figures)
        return Storage(str(self.models_dir), usage.total, usage.used, usage.free, models, partial, reserved,
                       self.config.downloads.disk_margin_mb * 1024 * 1024)

    async def follow(self, task_id: str | None) -> AsyncIterator[DownloadEvent | None]:
        """A snapshot, then every change: of one task (ending once it has finished or is deleted), or of all.

        ``None`` comes after ``downloads.keepalive`` seconds of quiet, for a
        keep-alive. An unknown ``task_id`` raises before anything is sent.
        """
        if task_id is not None:
            await self.get(task_id)
        return self._follow(task_id)

    async def _follow(self, task_id: str | None) -> AsyncIterator[DownloadEvent | None]:
        with self.events.subscribe("download.*" if task_id is None else f"download.{task_id}") as sub:
            # Read after subscribing, so no change between the two is lost.
            if task_id is None:
                snapshot = (await self.list(None, 1, 100)).items
            else:
                try:
                    snapshot = [await self.get(task_id)]
                except DownloadNotFoundError:
                    return  # deleted in between
            yield DownloadEvent("snapshot", snapshot)
            if task_id is not None and snapshot[0].finished:
                return
            while True:
                item = await sub.get(timeout=KEEPALIVE_S)
                if item is None:
                    yield None
                    continue
                event: DownloadEvent = item[1]
                yield event
                if task_id is not None and (event.kind == "deleted" or event.tasks[0].finished):
                    return

    def _storage_figures(self) -> tuple[Any, int, int]:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        usage = shutil.disk_usage(self.models_dir)
        models = partial = 0
        for p in self.models_dir.rglob("*"):
            try:
                if p.is_file():
                    if p.name.endswith(".partial"):
                        partial += p.stat().st_size
                    else:
                        models += p.stat().st_size
            except OSError:
                continue
        return usage, models, partial

    async def pause(self, task_id: str) -> DownloadTask:
        """Pause a pending or running task; its partial file stays for the resume."""
        row = await self._row(task_id)
        if row["status"] == "paused":
            return self._view(row)
        if row["status"] in TERMINAL or row["phase"] == "register":
            raise InvalidActionError(f"download {task_id} is {row['status']}; only pending or downloading "
                                     f"tasks can be paused", details={"status": row["status"]})
        moved = await self.repo.set_status_if(
            task_id, ("pending", "downloading"), "paused", message="paused")
        t = self._running.get(task_id)
        if moved and t is not None:
            t.request_stop("pause")
            await self._wait_worker(task_id)
        row = await self._row(task_id)
        self._publish(row, "status")
        return self._view(row)

    async def resume(self, task_id: str) -> DownloadTask:
        """Queue a paused (or failed) task again; it continues from its partial file."""
        row = await self._row(task_id)
        if row["status"] in ("pending", "downloading"):
            return self._view(row)
        if row["status"] in ("completed", "cancelled"):
            raise InvalidActionError(f"download {task_id} is {row['status']} and cannot be resumed",
                                     details={"status": row["status"]})
        if self.background.stopping or self._closing:
            raise ShuttingDownError()
        if row["phase"] == "register":
            return await self._retry_registration(row)
        await self.repo.set_status_if(
            task_id, ("paused", "failed"), "pending", message="resumed", error=None, error_code=None,
            error_details=None, finished_at=None)
        row = await self._row(task_id)
        self._publish(row, "status")
        await self._kick()
        return self._view(await self._row(task_id))

    async def cancel(self, task_id: str) -> DownloadTask:
        """Cancel a task that has not finished; its partial files are deleted."""
        row = await self._row(task_id)
        if row["status"] in TERMINAL or row["phase"] == "register":
            raise InvalidActionError(f"download {task_id} is {row['status']} and cannot be cancelled",
                                     details={"status": row["status"]})
        moved = await self.repo.set_status_if(
            task_id, ("pending", "downloading", "paused"), "cancelled", message="cancelled",
            finished_at=time.time())
        if moved:
            t = self._running.get(task_id)
            if t is not None:
                t.request_stop("cancel")
                await self._wait_worker(task_id)
            await asyncio.to_thread(self._remove_partials, row)
        row = await self._row(task_id)
        self._publish(row, "status")
        await self._kick()
        return self._view(row)

    async def delete(self, task_id: str) -> DownloadTask:
        """Forget a task; a running one is stopped and its partial files deleted (a registered model stays)."""
        row = await self._row(task_id)
        if row["phase"] == "register" and row["status"] not in TERMINAL:
            raise InvalidActionError(f"download {task_id} is registering its model; try again in a moment")
        t = self._running.get(task_id)
        if t is not None:
            t.request_stop("delete")
            await self._wait_worker(task_id)
        if row["status"] != "completed":
            await asyncio.to_thread(self._remove_partials, row)
        await self.repo.delete(task_id)
        view = self._view(row)
        self.events.publish(f"download.{task_id}", DownloadEvent("deleted", [view]))
        await self._kick()
        return view

    # -- internals --------------------------------------------------------------
    async def _row(self, task_id: str) -> dict[str, Any]:
        row = await self.repo.get(task_id)
        if row is None:
            raise DownloadNotFoundError(f"no download task '{task_id}'", field="task_id")
        return row

    async def _wait_worker(self, task_id: str) -> None:
        w = self._workers.get(task_id)
        if w is not None and not w.done():
            await asyncio.wait([w], timeout=30)

    def _view(self, row: dict[str, Any]) -> DownloadTask:
        t = self._running.get(row["id"])
        total = int(row["total_bytes"] or 0)
        if row["status"] == "completed":
            done = total
        elif t is not None:
            done = t.downloaded
        else:
            done = int(row["downloaded_bytes"] or 0)
        speed = t.speed if t is not None and row["status"] == "downloading" else 0.0
        eta = (total - done) / speed if speed > 0 and total > done else None
        files = [DownloadFile(f["name"], f["size"], f.get("sha256"), str(self.models_dir / f["path"]))
                 for f in row["files"]]
        return DownloadTask(
            id=row["id"], model_id=row["model_id"], source=row["source"],
            filename=files[0].name if files else row["filename"],
            quantization=row["quantization"] or (quantization_of(files[0].name) if files else None),
            revision=row["revision"], status=row["status"], phase=row["phase"], downloaded_bytes=done,
            total_bytes=total, speed_bps=speed, eta_s=eta, files=files, model_name=row["model_name"],
            message=row["message"], error=row["error"], error_code=row["error_code"],
            error_details=row["error_details"], created_at=row["created_at"], updated_at=row["updated_at"],
            started_at=row["started_at"], finished_at=row["finished_at"])

    def _publish(self, row: dict[str, Any], event: str) -> None:
        self.events.publish(f"download.{row['id']}", DownloadEvent(event, [self._view(row)]))

    async def _kick(self) -> None:
        """Start pending tasks, oldest first, while fewer than ``max_concurrent`` run."""
        if self._closing or self.background.stopping:
            return
        async with self._kick_lock:
            limit = max(1, self.config.downloads.max_concurrent)
            for row in await self.repo.in_states(("pending",)):
                if len(self._workers) >= limit:
                    break
                if row["id"] in self._workers:
                    continue
                self._workers[row["id"]] = asyncio.ensure_future(self._run(row["id"]))

    async def _run(self, task_id: str) -> None:
        try:
            await self._run_inner(task_id)
        finally:
            self._workers.pop(task_id, None)
            self._running.pop(task_id, None)
            if not self._closing:
                await self._kick()

    async def _run_inner(self, task_id: str) -> None:
        store = self.repo
        if not await store.set_status_if(task_id, ("pending",), "downloading", started_at=time.time(),
                                         message="downloading", error=None, error_code=None, error_details=None):
            return
        # Registered before any await, so a pause or cancel arriving now reaches this transfer.
        t = Transfer(task_id, 0)
        self._running[task_id] = t
        row = await self._row(task_id)
        files = row["files"]
        t.total = int(row["total_bytes"])
        t.downloaded = await asyncio.to_thread(self._bytes_on_disk, files)
        row = await self._row(task_id)
        if row["status"] != "downloading":
            return
        self._publish(row, "status")
        reporter = asyncio.ensure_future(self._report(t))
        loop = asyncio.get_running_loop()
        headers = self.hub.hf_headers() if row["source"] == "huggingface" else {}
        try:
            await loop.run_in_executor(self._pool, self._transfer_all, t, files, headers)
            # Verified and complete; from here on the task is finishing and cannot be paused.
            if not await store.enter_register_phase(task_id, "verified; registering"):
                raise _Stopped()
            t.phase = "register"
            await self._finish(await self._row(task_id))
        except _Stopped:
            await self._stopped(task_id, t)
        except LlmdError as err:
            await self._fail(task_id, err)
        except Exception:  # noqa: BLE001 - logged with traceback; the task says what happened
            log.exception("download %s failed", task_id)
            await self._fail(task_id, InternalError("the download failed unexpectedly; see the daemon's log"))
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)

    async def _stopped(self, task_id: str, t: Transfer) -> None:
        store = self.repo
        await store.update(task_id, downloaded_bytes=t.downloaded)
        if t.reason == "shutdown":
            await store.set_status_if(task_id, ("downloading",), "pending",
                                      message="interrupted by shutdown; resumes on start")
        row = await store.get(task_id)
        if row is not None:
            if row["status"] == "cancelled":
                await asyncio.to_thread(self._remove_partials, row)
            self._publish(row, "status")

    async def _retry_registration(self, row: dict[str, Any]) -> DownloadTask:
        """Resume a task whose verified files were in place but whose registration failed: register again.

        Its files are not downloaded again. If they are gone, the task goes
        back to the transfer phase, so that the next resume downloads and
        verifies them anew (a ``register`` phase must only ever stand for
        verified files).
        """
        task_id = row["id"]
        if not await self.repo.set_status_if(
                task_id, ("failed",), "downloading", message="registering again", error=None, error_code=None,
                error_details=None, finished_at=None):
            return self._view(await self._row(task_id))
        try:
            await self._finish(await self._row(task_id))
        except LlmdError as err:
            await self.repo.update(task_id, phase="transfer")
            await self._fail(task_id, err)
        except Exception:  # noqa: BLE001 - logged with traceback; the task says what happened
            log.exception("registering download %s failed", task_id)
            await self._fail(task_id, InternalError("registering the download failed; see the daemon's log"))
        return self._view(await self._row(task_id))

    async def _fail(self, task_id: str, err: LlmdError) -> None:
        log.warning("download %s failed: %s", task_id, err.message)
        await self.repo.set_status_if(
            task_id, ("pending", "downloading"), "failed", message=err.message, error=err.message,
            error_code=err.code.upper(), error_details=err.details, finished_at=time.time())
        row = await self.repo.get(task_id)
        if row is not None:
            self._publish(row, "status")

    async def _report(self, t: Transfer) -> None:
        """Progress events every ``progress_interval_s``; the byte count persisted every few seconds."""
        interval = max(0.05, float(self.config.downloads.progress_interval_s))
        last_persist = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            t.sample()
            row = await self.repo.get(t.task_id)
            if row is None or row["status"] != "downloading":
                continue
            self._publish(row, "progress")
            if time.monotonic() - last_persist >= _PERSIST_EVERY_S:
                last_persist = time.monotonic()
                await self.repo.update(t.task_id, downloaded_bytes=t.downloaded)

    def _bytes_on_disk(self, files: list[dict[str, Any]]) -> int:
        n = 0
        for f in files:
            final = self.models_dir / f["path"]
            part = _partial(final)
            if part.exists():
                n += min(part.stat().st_size, f["size"])
        return n

    def _remove_partials(self, row: dict[str, Any]) -> None:
        for f in row["files"]:
            part = _partial(self.models_dir / f["path"])
            try:
                part.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                log.warning("could not delete %s", part, exc_info=True)

    # -- the transfer thread --------------------------------------------------------
    def _check_disk(self, need: int) -> None:
        margin = self.config.downloads.disk_margin_mb * 1024 * 1024
        self.models_dir.mkdir(parents=True, exist_ok=True)
        usage = shutil.disk_usage(self.models_dir)
        if usage.free < need + margin:
            raise InsufficientStorageError(
                f"not enough disk space in {self.models_dir}: {need / _MIB:.1f} MiB to download plus a margin of "
                f"{margin / _MIB:.1f} MiB needed, {usage.free / _MIB:.1f} MiB free",
                details={"required_bytes": need, "margin_bytes": margin, "free_bytes": usage.free,
                         "total_bytes": usage.total, "path": str(self.models_dir)})

    def _transfer_all(self, t: Transfer, files: list[dict[str, Any]], headers: dict[str, str]) -> None:
        """Fetch every file into its .partial, then verify them all (runs on a download thread)."""
        self._check_disk(t.total - t.downloaded)
        timeout = float(self.config.hub.timeout_s)
        with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(timeout, read=max(30.0, timeout * 3))) as client:
            for f in files:
                self._fetch(client, t, f, headers)
        t.phase = "verify"
        for f in files:
            self._verify(t, f)

    def _fetch(self, client: httpx.Client, t: Transfer, f: dict[str, Any], headers: dict[str, str]) -> None:
        final = self.models_dir / f["path"]
        part = _partial(final)
        part.parent.mkdir(parents=True, exist_ok=True)
        size = int(f["size"])
        retries = max(0, self.config.downloads.retries)
        backoff = max(0.0, float(self.config.downloads.retry_backoff_s))
        failures = 0
        while True:
            if t.stop.is_set():
                raise _Stopped()
            offset = part.stat().st_size if part.exists() else 0
            if offset > size:  # not this file: start over
                part.unlink()
                t.downloaded -= offset
                offset = 0
            if offset == size:
                return
            before = offset
            try:
                self._fetch_once(client, t, f, part, offset, headers)
            except _Retry as exc:
                now = part.stat().st_size if part.exists() else 0
                failures = 0 if now > before else failures + 1
                if failures > retries:
                    raise HubUnavailableError(
                        f"downloading {f['name']} failed after {retries} retries: {exc}",
                        details={"file": f["name"], "downloaded_bytes": t.downloaded}) from None
                delay = min(30.0, backoff * (2 ** max(0, failures - 1)))
                log.info("download %s: %s; retrying from byte %d in %.1fs", t.task_id, exc, now, delay)
                if t.stop.wait(delay):
                    raise _Stopped() from None

    def _fetch_once(self, client: httpx.Client, t: Transfer, f: dict[str, Any], part: Path, offset: int,
                    headers: dict[str, str]) -> None:
        size = int(f["size"])
        hdrs = dict(headers)
        if offset:
            hdrs["Range"] = f"bytes={offset}-"
        try:
            with client.stream("GET", f["url"], headers=hdrs) as resp:
                if resp.status_code == 416 and offset:
                    # The server has nothing past our offset; the hash decides if the file is right.
                    return
                if resp.status_code in (408, 425, 429) or resp.status_code >= 500:
                    raise _Retry(f"the hub answered {resp.status_code}")
                if resp.status_code in (401, 403, 404):
                    raise ModelNotFoundError(f"{f['name']} is not available ({resp.status_code}) at {f['url']}",
                                             field="model_id", details={"status": resp.status_code})
                if resp.status_code >= 400:
                    raise HubUnavailableError(f"the hub answered {resp.status_code} for {f['name']}",
                                              details={"status": resp.status_code})
                mode = "ab"
                if resp.status_code != 206 and offset:
                    # The server ignored the Range header: take the whole body from the start.
                    t.downloaded -= offset
                    offset, mode = 0, "wb"
                elif not offset:
                    mode = "wb"
                written_since_check = written_since_sync = 0
                with open(part, mode) as fh:
                    for chunk in resp.iter_bytes():
                        if t.stop.is_set():
                            fh.flush()
                            os.fsync(fh.fileno())
                            raise _Stopped()
                        fh.write(chunk)
                        n = len(chunk)
                        offset += n
                        t.downloaded += n
                        written_since_check += n
                        written_since_sync += n
                        if offset > size:
                            break
                        if written_since_check >= _DISK_CHECK_EVERY:
                            written_since_check = 0
                            fh.flush()
                            self._check_disk(max(0, t.total - t.downloaded))
                        if written_since_sync >= _FSYNC_EVERY:
                            written_since_sync = 0
                            fh.flush()
                            os.fsync(fh.fileno())
                    fh.flush()
                    os.fsync(fh.fileno())
        except httpx.TransportError as exc:
            # The task's error reaches clients: the kind of failure only; its text (addresses, errno) goes to the log.
            log.info("download %s: %s: %s", t.task_id, type(exc).__name__, exc)
            raise _Retry(f"the connection to the hub failed ({type(exc).__name__})") from None
        if offset < size:
            raise _Retry(f"the body ended at byte {offset} of {size}")

    def _verify(self, t: Transfer, f: dict[str, Any]) -> None:
        part = _partial(self.models_dir / f["path"])
        size = part.stat().st_size if part.exists() else 0
        expected = (f.get("sha256") or "").lower()
        if size != int(f["size"]):
            self._discard(t, part)
            raise ChecksumMismatchError(
                f"{f['name']} has {size} bytes, the hub says {f['size']}; the file was deleted",
                details={"file": f["name"], "expected_size": f["size"], "actual_size": size})
        if not expected:
            log.warning("download %s: the hub gives no sha256 for %s; size checked only", t.task_id, f["name"])
            return
        h = hashlib.sha256()
        with open(part, "rb") as fh:
            while block := fh.read(1024 * 1024):
                if t.stop.is_set():
                    raise _Stopped()
                h.update(block)
        actual = h.hexdigest()
        if actual != expected:
            self._discard(t, part)
            raise ChecksumMismatchError(
                f"sha256 of {f['name']} does not match the hub's: expected {expected}, got {actual}; "
                f"the file was deleted and nothing was registered",
                details={"file": f["name"], "expected_sha256": expected, "actual_sha256": actual})

    def _discard(self, t: Transfer, part: Path) -> None:
        try:
            size = part.stat().st_size
            part.unlink()
            t.downloaded = max(0, t.downloaded - size)
        except OSError:
            pass

    # -- finishing ----------------------------------------------------------------------
    def _rename_all(self, files: list[dict[str, Any]]) -> Path:
        """Move verified .partial files into place (fsync + atomic rename); the first file's path."""
        first: Path | None = None
        for f in files:
            final = self.models_dir / f["path"]
            part = _partial(final)
            if part.exists():
                with open(part, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(part, final)
                _fsync_dir(final.parent)
            if not final.exists() or final.stat().st_size != int(f["size"]):
                raise ChecksumMismatchError(f"{final} is missing or has the wrong size after the download",
                                            details={"file": f["name"]})
            first = first or final
        assert first is not None
        return first

    async def _finish(self, row: dict[str, Any]) -> None:
        """Rename the verified files into place, register the model, and complete the task (idempotent)."""
        task_id = row["id"]
        path = await asyncio.to_thread(self._rename_all, row["files"])
        model = None
        for m in await self.registry.list():
            if m.path == str(path):
                model = m
                break
        if model is None:
            model = await self._register(row, path)
        await self.repo.update(
            task_id, status="completed", model_name=model.name, finished_at=time.time(),
            downloaded_bytes=row["total_bytes"], message=f"completed; registered as '{model.name}'",
            error=None, error_code=None, error_details=None)
        log.info("download %s completed: %s registered as %s", task_id, path, model.name)
        self._publish(await self._row(task_id), "status")

    async def _register(self, row: dict[str, Any], path: Path) -> Model:
        base = row["model_id"]
        first = row["files"][0]
        quant = row["quantization"] or quantization_of(first["name"])
        stem = Path(first["name"]).name.removesuffix(".gguf")
        candidates = [base]
        if quant:
            candidates.append(f"{base}:{quant}")
        candidates += [f"{base}:{stem}", f"{base}:{row['id']}"]
        metadata = {"origin": {
            "source": row["source"], "repo": base, "filename": first["name"], "revision": row["revision"],
            "sha256": first.get("sha256"), "files": [f["name"] for f in row["files"]], "task_id": row["id"],
            "url": first["url"]}}
        reg_source = "hf" if row["source"] == "huggingface" else "ollama"
        for name in candidates:
            if await self.registry.find(name) is not None:
                continue
            aliases = []
            if name != base and await self.registry.find(base) is None:
                aliases.append(base)
            try:
                return await self.registry.add_file(path, name, source=reg_source, aliases=aliases,
                                                         metadata=metadata)
            except ModelExistsError:
                continue
        raise InternalError(f"no free registry name for {base}")

