"""The store: opening, migrating and closing the SQLite database.

One aiosqlite connection serves all reads and writes. aiosqlite runs every
statement on its own thread, in order, so there is exactly one writer and the
event loop never blocks on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiosqlite

from llmd.errors import ConfigError
from llmd.store.migrations import MIGRATIONS

log = logging.getLogger(__name__)


class StoreVersionError(ConfigError):
    """The database comes from a newer llmd: refused at start, in one line, before anything is touched."""


class Store:
    """Owns the database connection and exposes the repositories."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        # Every write takes this lock, so one coroutine's transaction never
        # swallows another coroutine's statements on the shared connection.
        self._write_lock = asyncio.Lock()
        from llmd.store.alerts import AlertsRepo
        from llmd.store.auth import AuthRepo
        from llmd.store.deployments import DeploymentRepo
        from llmd.store.downloads import DownloadRepo
        from llmd.store.hub import HubRepo
        from llmd.store.metrics import MetricsRepo
        from llmd.store.models import ModelRepo
        from llmd.store.requests import RequestLogRepo
        from llmd.store.responses import ResponseRepo
        from llmd.store.sessions import ChatSessionRepo
        from llmd.store.settings import SettingsRepo

        self.models = ModelRepo(self)
        self.requests = RequestLogRepo(self)
        self.deployments = DeploymentRepo(self)
        self.sessions = ChatSessionRepo(self)
        self.auth = AuthRepo(self)
        self.downloads = DownloadRepo(self)
        self.hub = HubRepo(self)
        self.metrics = MetricsRepo(self)
        self.settings = SettingsRepo(self)
        self.alerts = AlertsRepo(self)
        self.responses = ResponseRepo(self)

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection; raises if the store is closed."""
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        """Open (creating if needed) the database and apply pending migrations."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a
        # multi-statement change is one transaction and nothing is implicit.
        self._db = await aiosqlite.connect(str(self.path), isolation_level=None)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._migrate()

    async def _migrate(self) -> None:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        async with self.db.execute("SELECT name FROM schema_migrations") as cur:
            applied = {row[0] async for row in cur}
        newer = sorted(applied - {name for name, _ in MIGRATIONS})
        if newer:
            # A downgrade: this llmd would misread (or damage) what a newer one wrote.
            await self.close()
            raise StoreVersionError(
                f"{self.path} was written by a newer llmd (its schema has {', '.join(newer)}, which this version "
                "does not know): install that version again, or restore a backup made by this one "
                "(llmctl restore)")
        pending = [(name, sql) for name, sql in sorted(MIGRATIONS) if name not in applied]
        if pending and applied:
            # An upgrade changes the schema of existing data: keep a copy from before, in case.
            saved = self.path.parent / "backups" / f"llmd-{time.strftime('%Y%m%dT%H%M%S')}-before-{pending[0][0]}.db"
            await self.backup_to(saved)
            log.info("database copied to %s before migrating", saved)
        for name, sql in pending:  # by name: the order is in the names
            log.info("applying migration %s", name)
            # executescript runs the whole script; BEGIN..COMMIT inside it make
            # the schema change and its record one atomic transaction.
            await self.db.executescript(
                f"BEGIN;\n{sql}\nINSERT INTO schema_migrations(name, applied_at) "
                f"VALUES ('{name}', {time.time()});\nCOMMIT;"
            )

    async def backup_to(self, path: Path) -> None:
        """A consistent copy of the live database at ``path`` (SQLite's online backup API, in aiosqlite's
        thread: writers wait only for the pages being copied)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        target = await asyncio.to_thread(sqlite3.connect, str(partial), check_same_thread=False)
        try:
            await self.db.backup(target)
        finally:
            await asyncio.to_thread(target.close)
        os.replace(partial, path)

    async def applied_migrations(self) -> list[str]:
        """Names of the migrations recorded as applied, in order."""
        async with self.db.execute("SELECT name FROM schema_migrations ORDER BY name") as cur:
            return [row[0] async for row in cur]

    async def check(self) -> bool:
        """A cheap liveness query, for health checks."""
        try:
            async with self.db.execute("SELECT 1") as cur:
                return (await cur.fetchone())[0] == 1
        except Exception:  # noqa: BLE001 - any failure means unhealthy
            log.exception("store check failed")
            return False

    async def close(self) -> None:
        """Checkpoint the WAL and close the connection."""
        if self._db is None:
            return
        try:
            await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception:  # noqa: BLE001 - closing matters more than the checkpoint
            log.warning("WAL checkpoint failed on close", exc_info=True)
        await self._db.close()
        self._db = None

    # -- helpers shared by the repositories ----------------------------
    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One atomic write: commits on success, rolls back on any error."""
        async with self._write_lock:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
            except asyncio.CancelledError:
                # The BEGIN was queued on aiosqlite's thread before the cancellation (a client that went
                # away) and runs all the same: end it before the lock is given back, or every later write
                # fails with "cannot start a transaction within a transaction".
                await _finish(asyncio.ensure_future(self._rollback_quietly()))
                raise
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    async def _rollback_quietly(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction when the BEGIN itself failed
            await self.db.execute("ROLLBACK")

    async def fetchall(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        """Run a query and return plain dicts."""
        async with self.db.execute(sql, params) as cur:
            return [dict(row) async for row in cur]

    async def fetchone(self, sql: str, params: tuple = ()) -> dict[str, Any] | None:
        """Run a query and return the first row as a dict, or ``None``."""
        async with self.db.execute(sql, params) as cur:
            row = await cur.fetchone()
            return dict(row) if row is not None else None


async def _finish(task: asyncio.Future) -> None:
    """Wait for ``task`` to end, however often the waiter is cancelled meanwhile."""
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue


def dumps(value: Any) -> str:
    """JSON for a TEXT column."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
