"""SQL for API keys and users (the JWT signing secret is a file, not a row)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from llmd.errors import ConflictError

if TYPE_CHECKING:
    from llmd.store.db import Store

_KEY_COLUMNS = "id, name, prefix, scope, models, created_at, expires_at, last_used_at, revoked_at"


def _key_row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    row["models"] = json.loads(row["models"]) if row.get("models") else None
    return row


class AuthRepo:
    """Rows of API keys and users."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- API keys -------------------------------------------------------
    async def add_key(self, *, name: str, prefix: str, key_hash: str, scope: str,
                      models: list[str] | None, expires_at: float | None) -> dict[str, Any]:
        """Insert a key (by its hash); 409 if a key in force has the same name."""
        now = time.time()
        try:
            async with self.store.transaction() as db:
                cur = await db.execute(
                    "INSERT INTO api_keys(name, prefix, key_hash, scope, models, created_at, expires_at)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (name, prefix, key_hash, scope, json.dumps(models) if models is not None else None,
                     now, expires_at))
                key_id = int(cur.lastrowid)
        except sqlite3.IntegrityError:
            raise ConflictError(f"an API key named '{name}' already exists", field="name") from None
        found = await self.get_key(key_id)
        assert found is not None
        return found

    async def get_key(self, key_id: int) -> dict[str, Any] | None:
        """One key's public fields by id."""
        return _key_row(await self.store.fetchone(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id=?", (key_id,)))

    async def key_by_hash(self, key_hash: str) -> dict[str, Any] | None:
        """The key whose hash is ``key_hash`` (revoked and expired ones too: the caller decides)."""
        return _key_row(await self.store.fetchone(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash=?", (key_hash,)))

    async def list_keys(self, *, include_revoked: bool = False) -> list[dict[str, Any]]:
        """Keys, oldest first."""
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows = await self.store.fetchall(f"SELECT {_KEY_COLUMNS} FROM api_keys{where} ORDER BY id")
        return [_key_row(r) for r in rows]  # type: ignore[misc]

    async def revoke_key(self, ref: str) -> dict[str, Any] | None:
        """Revoke the key in force whose id or name is ``ref``; ``None`` if there is none."""
        now = time.time()
        async with self.store.transaction() as db:
            # An id is ASCII digits that fit SQLite's INTEGER ("²" is a digit to str.isdigit, not to int()).
            if ref.isascii() and ref.isdigit() and len(ref) <= 18:
                cur = await db.execute("SELECT id FROM api_keys WHERE id=? AND revoked_at IS NULL", (int(ref),))
            else:
                cur = await db.execute("SELECT id FROM api_keys WHERE name=? AND revoked_at IS NULL", (ref,))
            row = await cur.fetchone()
            await cur.close()
            if row is None:
                return None
            await db.execute("UPDATE api_keys SET revoked_at=? WHERE id=?", (now, row[0]))
        return await self.get_key(int(row[0]))

    async def touch_key(self, key_id: int, when: float) -> None:
        """Record when a key was last used."""
        async with self.store.transaction() as db:
            await db.execute("UPDATE api_keys SET last_used_at=? WHERE id=?", (when, key_id))

    # -- users ------------------------------------------------------------
    async def add_user(self, username: str, password_hash: str, scope: str) -> dict[str, Any]:
        """Insert a user; 409 if the name is taken."""
        now = time.time()
        try:
            async with self.store.transaction() as db:
                await db.execute(
                    "INSERT INTO users(username, password_hash, scope, created_at, updated_at) VALUES (?,?,?,?,?)",
                    (username, password_hash, scope, now, now))
        except sqlite3.IntegrityError:
            raise ConflictError(f"a user named '{username}' already exists", field="username") from None
        found = await self.get_user(username)
        assert found is not None
        return found

    async def get_user(self, username: str) -> dict[str, Any] | None:
        """A user row, password hash included (never send it to a client)."""
        return await self.store.fetchone("SELECT * FROM users WHERE username=?", (username,))

    async def list_users(self) -> list[dict[str, Any]]:
        """Users without their password hashes, oldest first."""
        return await self.store.fetchall(
            "SELECT id, username, scope, created_at, updated_at, last_login_at FROM users ORDER BY id")

    async def remove_user(self, username: str) -> bool:
        """Delete a user; False if there was none."""
        async with self.store.transaction() as db:
            cur = await db.execute("DELETE FROM users WHERE username=?", (username,))
            return cur.rowcount > 0

    async def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace a user's hash (argon2 parameters changed since it was made)."""
        async with self.store.transaction() as db:
            await db.execute("UPDATE users SET password_hash=?, updated_at=? WHERE username=?",
                             (password_hash, time.time(), username))

    async def touch_user(self, username: str, when: float) -> None:
        """Record a successful login."""
        async with self.store.transaction() as db:
            await db.execute("UPDATE users SET last_login_at=? WHERE username=?", (when, username))
