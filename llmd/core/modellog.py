"""Per-model logs that outlive a deployment: a bounded JSON-lines file per model.

Every line a deployment logs (its own state changes, load messages, llama.cpp's
lines routed through ``llama_log_set``, generation errors, evictions) goes to
``<state_dir>/logs/<model>.log`` as one JSON object ``{"ts", "level",
"message"}`` and is published on the event broker as topic ``log.<model>``.
The file is rotated to ``<model>.log.1`` past ``max_bytes``, so a model's log
never takes more than twice that. Reading works for a stopped model too.

Lines come from several threads (the load thread, the scheduler thread, the
event loop). :meth:`ModelLogs.write` only queues the line and publishes it;
one writer thread appends queued lines to the files, so no caller (the event
loop least of all) ever waits for the disk or for a reader. Reading the tail
runs in a worker thread, after the lines queued before it are written.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from llmd.core.events import EventBroker

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1 << 20
_FLUSH = object()  # a marker the writer answers once every line queued before it is written


@dataclass(frozen=True)
class LogEntry:
    """One line of a model's log."""

    ts: float
    level: str
    message: str


def log_file_name(model_name: str) -> str:
    """A file name for ``model_name`` (which may hold ``/`` or ``:``), unique per name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("._") or "model"
    if safe != model_name:
        safe += "-" + hashlib.sha1(model_name.encode("utf-8")).hexdigest()[:8]
    return safe + ".log"


class ModelLog:
    """The files of one model's log (blocking methods: the writer thread and worker threads call them)."""

    def __init__(self, directory: Path, model_name: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.model_name = model_name
        self.path = Path(directory) / log_file_name(model_name)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # a line is never appended while a reader reads or a rotation runs
        self._broken = False

    def append(self, entry: LogEntry) -> None:
        """Append one line, rotating the file past ``max_bytes``."""
        line = json.dumps({"ts": entry.ts, "level": entry.level, "message": entry.message},
                          ensure_ascii=False) + "\n"
        with self._lock:
            if self._broken:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                    self.path.replace(self.path.with_name(self.path.name + ".1"))
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError:
                # A full or read-only disk must not break a deployment; say so once.
                self._broken = True
                log.warning("cannot write the log of %s to %s", self.model_name, self.path, exc_info=True)

    def tail(self, lines: int = 100) -> list[LogEntry]:
        """The last ``lines`` entries, oldest first."""
        if lines <= 0:
            return []
        out: collections.deque[LogEntry] = collections.deque(maxlen=lines)
        with self._lock:
            for p in (self.path.with_name(self.path.name + ".1"), self.path):
                try:
                    with p.open("r", encoding="utf-8", errors="replace") as fh:
                        for raw in fh:
                            try:
                                item = json.loads(raw)
                            except ValueError:
                                continue  # a line cut by a crash
                            if isinstance(item, dict):
                                out.append(LogEntry(float(item.get("ts") or 0.0), str(item.get("level", "info")),
                                                    str(item.get("message", ""))))
                except FileNotFoundError:
                    continue
        return list(out)

    def remove(self) -> None:
        """Delete the files (when the model itself is deleted)."""
        with self._lock:
            for p in (self.path, self.path.with_name(self.path.name + ".1")):
                p.unlink(missing_ok=True)


class ModelLogs:
    """Every model's log: queued writes, one writer thread, reads and follows."""

    def __init__(self, directory: Path, events: EventBroker, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.events = events
        self.max_bytes = max_bytes
        self._logs: dict[str, ModelLog] = {}
        self._logs_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()

    def _log(self, name: str) -> ModelLog:
        with self._logs_lock:
            ml = self._logs.get(name)
            if ml is None:
                ml = self._logs[name] = ModelLog(self.directory, name, self.max_bytes)
            return ml

    def _ensure_writer(self) -> None:
        with self._writer_lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_loop, name="llmd-model-logs", daemon=True)
                self._writer.start()

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if isinstance(item, tuple) and item[0] is _FLUSH:
                    item[1].set()
                    continue
                name, entry = item
                self._log(name).append(entry)
            except Exception:  # noqa: BLE001 - the writer must outlive one bad line
                log.exception("writing a model log line failed")
            finally:
                self._queue.task_done()

    def write(self, name: str, level: str, message: str) -> LogEntry:
        """Log one line for model ``name`` (any thread; never blocks on the disk) and publish it."""
        entry = LogEntry(time.time(), level, message.rstrip())
        self._ensure_writer()
        self._queue.put((name, entry))
        self.events.publish_threadsafe(f"log.{name}", entry)
        return entry

    def _flush(self, timeout: float = 5.0) -> None:
        """Wait (blocking) until the lines queued so far are written."""
        if self._writer is None:
            return
        done = threading.Event()
        self._queue.put((_FLUSH, done))
        done.wait(timeout)

    def _tail_now(self, name: str, lines: int) -> list[LogEntry]:
        self._flush()
        return self._log(name).tail(lines)

    async def tail(self, name: str, lines: int = 100) -> list[LogEntry]:
        """The last ``lines`` entries of model ``name``'s log, oldest first (also of a stopped model)."""
        return await asyncio.to_thread(self._tail_now, name, lines)

    async def follow(self, name: str, lines: int, heartbeat_s: float) -> AsyncIterator[LogEntry | None]:
        """The last ``lines`` entries of model ``name``'s log, then each new one as it is logged; ``None``
        every ``heartbeat_s`` of quiet (for a keep-alive). Ends when the caller stops iterating.

        It subscribes before it reads the tail, so no line falls between the two
        and none is sent twice.
        """
        with self.events.subscribe(f"log.{name}") as sub:
            tail = await self.tail(name, lines)
            seen = {(e.ts, e.message) for e in tail}
            for entry in tail:
                yield entry
            while True:
                got = await sub.get(heartbeat_s)
                if got is None:
                    yield None
                    continue
                entry = got[1]
                if not isinstance(entry, LogEntry):
                    continue
                if seen:
                    if (entry.ts, entry.message) in seen:
                        continue  # logged before the tail was read: already sent
                    seen.clear()  # the queue is in order: everything after this is new
                yield entry

    async def remove(self, name: str) -> None:
        """Delete model ``name``'s log files."""
        def run() -> None:
            self._flush()
            self._log(name).remove()

        await asyncio.to_thread(run)

    async def close(self) -> None:
        """Write what is queued and stop the writer thread."""
        if self._writer is not None and self._writer.is_alive():
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join, 5.0)

