"""The console's files: what ``static/`` holds, read once, with their types, ETags and gzip copies.

The whole folder is about 250 KB (the console's own modules and the vendored
Preact, htm and uPlot of ``static/vendor/``), so it is read into memory on the
first request, off the event loop, and every later answer is a dictionary
lookup. Only files found under ``static/`` at that moment can be served: a
name is a key of that index, never a path joined onto the folder, so no
request can reach outside it.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
# Below this, gzip saves too little to be worth a second copy in memory.
GZIP_MIN_BYTES = 1024


@dataclass(frozen=True)
class Asset:
    """One file: its bytes (and gzip copy, when smaller), content type and strong ETag."""

    data: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


class Assets:
    """The index of ``root``'s files by their path relative to it (``vendor/uPlot.esm.js``)."""

    def __init__(self, root: Path = STATIC) -> None:
        self.root = root
        self._files: dict[str, Asset] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Asset]:
        files: dict[str, Asset] = {}
        for path in sorted(self.root.rglob("*")):
            ctype = TYPES.get(path.suffix.lower())
            if ctype is None or not path.is_file():
                continue  # only the kinds of file the console is made of
            data = path.read_bytes()
            packed = gzip.compress(data, 9, mtime=0) if len(data) >= GZIP_MIN_BYTES else None
            files[path.relative_to(self.root).as_posix()] = Asset(
                data, packed if packed is not None and len(packed) < len(data) else None, ctype,
                '"' + hashlib.sha256(data).hexdigest()[:32] + '"')
        return files

    def get(self, name: str) -> Asset | None:
        """The file ``name`` (relative, ``/``-separated), or ``None``. Blocking on the first call: run it in a
        thread."""
        with self._lock:
            if self._files is None:
                self._files = self._load()
        return self._files.get(name)

    def names(self) -> list[str]:
        """Every file that can be served (blocking on the first call, as :meth:`get`)."""
        self.get("")
        return sorted(self._files or {})
