"""SQL for settings changed at run time: ``section.key -> JSON value``, each winning over the config file.

The daemon reads them before it builds the core (so a setting that needs a
restart takes effect at the next start), and ``llmd --print-config`` reads
them without the daemon: :func:`read_overrides` opens the file read-only.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from llmd.store.db import Store


class SettingsRepo:
    """The stored overrides (``settings_overrides``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def all(self) -> dict[str, Any]:
        """Every stored override, ``section.key -> value``."""
        rows = await self.store.fetchall("SELECT key, value FROM settings_overrides ORDER BY key")
        return {r["key"]: json.loads(r["value"]) for r in rows}

    async def put(self, values: Mapping[str, Any]) -> None:
        """Store (or replace) overrides, all in one transaction."""
        now = time.time()
        async with self.store.transaction() as db:
            await db.executemany(
                "INSERT INTO settings_overrides(key, value, updated_at) VALUES (?,?,?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [(k, json.dumps(v), now) for k, v in values.items()])

    async def remove(self, keys: list[str]) -> int:
        """Drop overrides (the file's value, or the default, applies again); returns how many were stored."""
        async with self.store.transaction() as db:
            cur = await db.executemany("DELETE FROM settings_overrides WHERE key = ?", [(k,) for k in keys])
            return cur.rowcount


def read_overrides(db_path: Path) -> dict[str, Any]:
    """The stored overrides of the database at ``db_path``, read-only and without the daemon
    (for ``llmd --print-config``); empty when there is no database or no table yet."""
    if not Path(db_path).exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return {}
    try:
        rows = con.execute("SELECT key, value FROM settings_overrides ORDER BY key").fetchall()
    except sqlite3.Error:  # an older database, not migrated yet
        return {}
    finally:
        con.close()
    return {k: json.loads(v) for k, v in rows}
