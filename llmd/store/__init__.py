"""SQLite persistence: one aiosqlite connection in WAL mode; all SQL lives here."""

from llmd.store.db import Store

__all__ = ["Store"]
