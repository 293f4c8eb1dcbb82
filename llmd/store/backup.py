"""Copies of the database: online backups, checks of a file to restore, and putting a restore in place.

Every copy goes through SQLite's online backup API, which reads a consistent
snapshot (the WAL included) while the daemon keeps writing. These functions
block: call them from a thread.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from llmd.store.migrations import MIGRATIONS

KNOWN = {name for name, _ in MIGRATIONS}


class DatabaseFileError(Exception):
    """A file that is not a database this llmd can use (corrupt, not SQLite, or from a newer llmd)."""


@dataclass(frozen=True)
class DatabaseInfo:
    """What a database file holds, as far as a restore needs to know."""

    path: str
    size_bytes: int
    migrations: list[str]
    newer: list[str]  # migrations this llmd does not know: the file comes from a newer version


def copy(src: Path, dst: Path) -> None:
    """Copy the database ``src`` (WAL included) to a new file ``dst`` with the online backup API."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    partial.unlink(missing_ok=True)
    # Read-write, so that a WAL left by a killed daemon is recovered into the copy rather than refused.
    source = sqlite3.connect(src, timeout=30)
    try:
        target = sqlite3.connect(partial)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    os.replace(partial, dst)  # a crash leaves a .partial, never a half-written backup under the final name


def inspect(path: Path) -> DatabaseInfo:
    """Check ``path``: SQLite, ``PRAGMA integrity_check`` ok, llmd's migrations table; raises
    :class:`DatabaseFileError` saying what is wrong."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise DatabaseFileError(f"cannot open {path}: {exc}") from None
    try:
        try:
            check = con.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise DatabaseFileError(f"{path} is not an SQLite database ({exc})") from None
        if check != [("ok",)]:
            raise DatabaseFileError(f"{path} fails SQLite's integrity check: {check[0][0]}")
        try:
            names = [r[0] for r in con.execute("SELECT name FROM schema_migrations ORDER BY name")]
        except sqlite3.Error:
            raise DatabaseFileError(f"{path} is an SQLite database but not llmd's (no schema_migrations)") from None
    finally:
        con.close()
    return DatabaseInfo(str(path), path.stat().st_size, names, sorted(set(names) - KNOWN))


def apply_restore(db_path: Path, pending: Path, backups: Path) -> Path | None:
    """Put the checked file ``pending`` in place of ``db_path`` (the daemon is not running it): the current
    database is first copied to ``backups``; returns that copy (None when there was no database)."""
    saved = None
    if db_path.exists():
        saved = backups / f"llmd-{time.strftime('%Y%m%dT%H%M%S')}-before-restore.db"
        copy(db_path, saved)
    for suffix in ("-wal", "-shm"):  # the old database's; the restored file has none
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    os.replace(pending, db_path)
    if saved is not None:
        shutil.copymode(saved, db_path)
    return saved
