"""Backups of the database while the daemon runs, and restores that the daemon puts in place itself.

A backup is SQLite's online backup API into a file under ``<state_dir>/backups``,
streamed to the client and then deleted. A restore arrives in parts (each
within the request size limit) into ``<state_dir>/restore.partial.db``; once
the client commits it with its size and SHA-256, the file is checked (SQLite's
integrity check, llmd's schema, not newer than this llmd), renamed to
``restore.pending.db``, and the daemon restarts: at start, before the store is
opened, the database in use is copied to ``backups/`` and the restored file
takes its place (:func:`llmd.store.backup.apply_restore`). The running store
is never swapped under live components.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from llmd.core.background import Background
from llmd.errors import ConflictError, ValidationError
from llmd.store.backup import DatabaseFileError, DatabaseInfo, inspect

log = logging.getLogger(__name__)

CHUNK = 1 << 20
PENDING = "restore.pending.db"
PARTIAL = "restore.partial.db"


@dataclass(frozen=True)
class Export:
    """A backup ready to send: its suggested file name, size, and the bytes (the file goes once read)."""

    name: str
    size_bytes: int
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True)
class RestoreStaged:
    """A checked restore waiting for the restart that puts it in place."""

    info: DatabaseInfo
    restarting: bool  # False: nothing restarts this daemon; restart it to apply the restore


def pending_restore(state_dir: Path) -> Path:
    """Where a checked restore waits for the next start."""
    return state_dir / PENDING


class Backups:
    """Database backups and restores."""

    def __init__(self, state_dir: Path, backup_to: Callable[[Path], Awaitable[None]], background: Background,
                 on_restart: Callable[[], None] | None = None) -> None:
        self.state_dir = state_dir
        self.backup_to = backup_to
        self.background = background
        self.on_restart = on_restart  # the daemon's: stop, and come back (systemd restarts it)
        self._lock = asyncio.Lock()  # one restore upload at a time

    async def export(self) -> Export:
        """A consistent copy of the database now, as a stream of bytes."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        folder = self.state_dir / "backups"
        # An export whose client left before reading it all is not deleted by its stream: sweep old ones.
        for old in folder.glob(".export-*.db") if folder.exists() else ():
            if time.time() - old.stat().st_mtime > 3600:
                old.unlink(missing_ok=True)
        path = folder / f".export-{stamp}-{id(self)}.db"
        await self.backup_to(path)
        size = path.stat().st_size

        async def chunks() -> AsyncIterator[bytes]:
            try:
                with path.open("rb") as fh:
                    while data := await asyncio.to_thread(fh.read, CHUNK):
                        yield data
            finally:
                path.unlink(missing_ok=True)

        return Export(f"llmd-{stamp}.db", size, chunks())

    async def restore_part(self, offset: int, data: bytes) -> int:
        """Append ``data`` at ``offset`` of the upload (0 starts a new one); returns the size so far.
        A part at another offset is a 409 that says where to go on from."""
        partial = self.state_dir / PARTIAL
        async with self._lock:
            size = partial.stat().st_size if partial.exists() else 0
            if offset != 0 and offset != size:
                raise ConflictError(f"the upload holds {size} bytes: send the part at offset {size} (or 0 to start "
                                    "again)", field="offset", details={"field": "offset", "expected_offset": size})

            def write() -> int:
                with partial.open("wb" if offset == 0 else "ab") as fh:
                    fh.write(data)
                return partial.stat().st_size

            return await asyncio.to_thread(write)

    async def restore_commit(self, size: int, sha256: str) -> RestoreStaged:
        """Check the upload against ``size`` and ``sha256``, then as a database; stage it and restart."""
        partial = self.state_dir / PARTIAL
        async with self._lock:
            if not partial.exists():
                raise ConflictError("nothing was uploaded: send the file's parts first", field="size")
            have = partial.stat().st_size
            if have != size:
                raise ValidationError(f"the upload holds {have} bytes, not {size}", field="size")
            digest = await asyncio.to_thread(_sha256, partial)
            if digest != sha256.lower():
                raise ValidationError("the upload's SHA-256 differs from sha256: send it again", field="sha256")
            try:
                info = await asyncio.to_thread(inspect, partial)
            except DatabaseFileError as exc:
                partial.unlink(missing_ok=True)
                raise ValidationError(f"not restored: {exc}", field="file") from None
            if info.newer:
                partial.unlink(missing_ok=True)
                raise ValidationError("not restored: the file comes from a newer llmd (schema "
                                      f"{', '.join(info.newer)})", field="file")
            partial.replace(self.state_dir / PENDING)
        log.warning("a restore of %d bytes is staged; llmd restarts to put it in place", size)
        if self.on_restart is None:
            return RestoreStaged(info, False)
        self.background.spawn(self._restart_soon())
        return RestoreStaged(info, True)

    async def _restart_soon(self) -> None:
        await asyncio.sleep(0.5)  # the answer reaches the client first
        assert self.on_restart is not None
        self.on_restart()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
