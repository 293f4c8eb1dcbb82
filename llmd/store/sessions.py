"""SQL for chat sessions: the WebSocket chat's sessions and their messages."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmd.store.db import Store


class ChatSessionRepo:
    """Chat sessions (id, current model, system prompt) and their ordered messages."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, session_id: str) -> dict[str, Any] | None:
        """The session row, or ``None`` if the session has never been written."""
        return await self.store.fetchone("SELECT * FROM chat_sessions WHERE id=?", (session_id,))

    async def _ensure(self, db: Any, session_id: str, now: float) -> None:
        await db.execute(
            "INSERT INTO chat_sessions(id, created_at, updated_at) VALUES (?,?,?) ON CONFLICT(id) DO NOTHING",
            (session_id, now, now),
        )

    async def set_model(self, session_id: str, model: str | None) -> None:
        """Remember the session's current model (creating the session if needed)."""
        now = time.time()
        async with self.store.transaction() as db:
            await self._ensure(db, session_id, now)
            await db.execute("UPDATE chat_sessions SET model=?, updated_at=? WHERE id=?", (model, now, session_id))

    async def set_system_prompt(self, session_id: str, prompt: str | None) -> None:
        """Set (or clear, with ``None``) the session's system prompt."""
        now = time.time()
        async with self.store.transaction() as db:
            await self._ensure(db, session_id, now)
            await db.execute("UPDATE chat_sessions SET system_prompt=?, updated_at=? WHERE id=?",
                             (prompt, now, session_id))

    async def add_message(self, session_id: str, role: str, content: str, *, model: str | None = None,
                          status: str = "ok", prompt_tokens: int | None = None,
                          completion_tokens: int | None = None) -> int:
        """Append one message to the session (creating the session if needed); returns its id."""
        now = time.time()
        async with self.store.transaction() as db:
            await self._ensure(db, session_id, now)
            cur = await db.execute(
                "INSERT INTO chat_messages(session_id, role, content, model, status, prompt_tokens,"
                " completion_tokens, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (session_id, role, content, model, status, prompt_tokens, completion_tokens, now),
            )
            await db.execute("UPDATE chat_sessions SET updated_at=? WHERE id=?", (now, session_id))
            return int(cur.lastrowid)

    async def messages(self, session_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The session's messages, oldest first; with ``limit``, only the newest ``limit`` of them."""
        if limit is None:
            return await self.store.fetchall(
                "SELECT * FROM chat_messages WHERE session_id=? ORDER BY id", (session_id,))
        rows = await self.store.fetchall(
            "SELECT * FROM chat_messages WHERE session_id=? ORDER BY id DESC LIMIT ?", (session_id, limit))
        rows.reverse()
        return rows

    async def delete(self, session_id: str) -> bool:
        """Forget a session and its messages; False if there was none."""
        async with self.store.transaction() as db:
            await db.execute("DELETE FROM chat_messages WHERE session_id=?", (session_id,))
            cur = await db.execute("DELETE FROM chat_sessions WHERE id=?", (session_id,))
            return cur.rowcount > 0
