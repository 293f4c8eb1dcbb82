"""SQL for download tasks: source, state, progress, the partial file."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from llmd.store.db import dumps

if TYPE_CHECKING:
    from llmd.store.db import Store

# Columns a caller may set through :meth:`DownloadRepo.update`.
_UPDATABLE = (
    "status", "phase", "files", "revision", "downloaded_bytes", "total_bytes", "model_name", "message",
    "error_code", "error", "error_details", "started_at", "finished_at", "filename", "quantization",
)
_JSON = ("files", "error_details")


def _row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    row = dict(row)
    row["files"] = json.loads(row.get("files") or "[]")
    row["error_details"] = json.loads(row["error_details"]) if row.get("error_details") else None
    return row


class DownloadRepo:
    """Rows of download tasks: source, state, progress, the partial file."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def insert(self, task_id: str, model_id: str, source: str, *, filename: str | None,
                     quantization: str | None, revision: str | None, files: list[dict[str, Any]],
                     total_bytes: int, status: str = "pending") -> dict[str, Any]:
        """Create a task row."""
        now = time.time()
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT INTO downloads(id, model_id, source, filename, quantization, revision, status, files,"
                " total_bytes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, model_id, source, filename, quantization, revision, status, dumps(files),
                 total_bytes, now, now))
        return await self.get(task_id)  # type: ignore[return-value]

    async def get(self, task_id: str) -> dict[str, Any] | None:
        """One task, or ``None``."""
        return _row(await self.store.fetchone("SELECT * FROM downloads WHERE id=?", (task_id,)))

    async def update(self, task_id: str, **fields: Any) -> None:
        """Set some columns of a task (JSON columns are encoded here)."""
        cols = [c for c in fields if c in _UPDATABLE]
        if not cols:
            return
        values = [dumps(fields[c]) if c in _JSON and fields[c] is not None else fields[c] for c in cols]
        async with self.store.transaction() as db:
            await db.execute(
                f"UPDATE downloads SET {', '.join(c + '=?' for c in cols)}, updated_at=? WHERE id=?",
                (*values, time.time(), task_id))

    async def set_status_if(self, task_id: str, from_states: tuple[str, ...], status: str,
                            **fields: Any) -> bool:
        """Move a task to ``status`` only if it is in one of ``from_states``; True if it moved.

        The check and the write are one transaction, so two callers (pause and
        a worker finishing) never both win.
        """
        cols = [c for c in fields if c in _UPDATABLE and c != "status"]
        values = [dumps(fields[c]) if c in _JSON and fields[c] is not None else fields[c] for c in cols]
        marks = ",".join("?" * len(from_states))
        sets = "".join(f", {c}=?" for c in cols)
        async with self.store.transaction() as db:
            cur = await db.execute(
                f"UPDATE downloads SET status=?{sets}, updated_at=? WHERE id=? AND status IN ({marks})",
                (status, *values, time.time(), task_id, *from_states))
            return cur.rowcount > 0

    async def enter_register_phase(self, task_id: str, message: str) -> bool:
        """Mark a downloading task's files as verified (phase ``register``); False if it is no longer downloading.

        From here on the task cannot be paused or cancelled: start-up recovery
        finishes what this phase began.
        """
        async with self.store.transaction() as db:
            cur = await db.execute(
                "UPDATE downloads SET phase='register', downloaded_bytes=total_bytes, message=?, updated_at=?"
                " WHERE id=? AND status='downloading'", (message, time.time(), task_id))
            return cur.rowcount > 0

    async def list(self, status: str | None = None, *, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """Tasks, newest first, optionally of one status."""
        if status:
            rows = await self.store.fetchall(
                "SELECT * FROM downloads WHERE status=? ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                (status, limit, offset))
        else:
            rows = await self.store.fetchall(
                "SELECT * FROM downloads ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (limit, offset))
        return [_row(r) for r in rows]  # type: ignore[misc]

    async def count(self, status: str | None = None) -> int:
        """How many tasks (of one status)."""
        if status:
            row = await self.store.fetchone("SELECT COUNT(*) AS n FROM downloads WHERE status=?", (status,))
        else:
            row = await self.store.fetchone("SELECT COUNT(*) AS n FROM downloads")
        return int(row["n"]) if row else 0

    async def counts(self) -> dict[str, int]:
        """Tasks per status."""
        rows = await self.store.fetchall("SELECT status, COUNT(*) AS n FROM downloads GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}

    async def in_states(self, states: tuple[str, ...]) -> list[dict[str, Any]]:
        """Tasks in any of ``states``, oldest first (the queue order)."""
        marks = ",".join("?" * len(states))
        rows = await self.store.fetchall(
            f"SELECT * FROM downloads WHERE status IN ({marks}) ORDER BY created_at, id", tuple(states))
        return [_row(r) for r in rows]  # type: ignore[misc]

    async def find_active(self, model_id: str, source: str, filename: str | None,
                          quantization: str | None) -> dict[str, Any] | None:
        """The newest unfinished (or completed) task for the same request, if any."""
        rows = await self.store.fetchall(
            "SELECT * FROM downloads WHERE model_id=? AND source=? AND IFNULL(filename, '')=?"
            " AND IFNULL(quantization, '')=? AND status IN ('pending', 'downloading', 'paused', 'completed')"
            " ORDER BY created_at DESC LIMIT 1",
            (model_id, source, filename or "", quantization or ""))
        return _row(rows[0]) if rows else None

    async def delete(self, task_id: str) -> bool:
        """Delete a task row; True if it existed."""
        async with self.store.transaction() as db:
            cur = await db.execute("DELETE FROM downloads WHERE id=?", (task_id,))
            return cur.rowcount > 0
