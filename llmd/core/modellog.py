"""Per-model logs that outlive a deployment: a bounded JSON-lines file per model.

Every line a deployment logs (its own state changes, load messages, llama.cpp's
lines routed through ``llama_log_set``, generation errors, evictions) goes to
``<state_dir>/logs/<model>.log`` as one JSON object ``{"ts", "level",
"message"}`` and is published on the event broker as topic ``log.<model>``.
The file is rotated to ``<model>.log.1`` past ``max_bytes``, so a model's log
never takes more than twice that. Reading works for a stopped model too.

Writes come from several threads (the load thread, the scheduler thread, the
event loop); one lock per file keeps lines whole. An append of one short line
is cheap enough to do inline; reading the tail runs in a worker thread.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from llmd.core.events import EventBroker

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1 << 20


def log_file_name(model_name: str) -> str:
    """A file name for ``model_name`` (which may hold ``/`` or ``:``), unique per name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("._") or "model"
    if safe != model_name:
        safe += "-" + hashlib.sha1(model_name.encode("utf-8")).hexdigest()[:8]
    return safe + ".log"


class ModelLog:
    """The persistent log of one model."""

    def __init__(self, directory: Path, model_name: str, events: EventBroker | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.model_name = model_name
        self.path = Path(directory) / log_file_name(model_name)
        self.events = events
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._broken = False

    def write(self, level: str, message: str, ts: float | None = None) -> dict[str, Any]:
        """Append one line (thread-safe) and publish it; returns the entry."""
        entry = {"ts": ts if ts is not None else time.time(), "level": level, "message": message.rstrip()}
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            if not self._broken:
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
        if self.events is not None:
            self.events.publish_threadsafe(f"log.{self.model_name}", entry)
        return entry

    def tail(self, lines: int = 100) -> list[dict[str, Any]]:
        """The last ``lines`` entries, oldest first (blocking: call it off the loop)."""
        if lines <= 0:
            return []
        out: collections.deque[dict[str, Any]] = collections.deque(maxlen=lines)
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
                                out.append(item)
                except FileNotFoundError:
                    continue
        return list(out)

    def remove(self) -> None:
        """Delete the files (when the model itself is deleted)."""
        with self._lock:
            for p in (self.path, self.path.with_name(self.path.name + ".1")):
                p.unlink(missing_ok=True)
