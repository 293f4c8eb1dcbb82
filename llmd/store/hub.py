"""SQL for the hub catalogue cache and favourites."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from llmd.store.db import dumps

if TYPE_CHECKING:
    from llmd.store.db import Store


def _item(row: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(row["data"])
    data["_fetched_at"] = row["fetched_at"]
    data["_detailed"] = bool(row["detailed"])
    return data


class HubRepo:
    """Rows of the hub catalogue cache and favourites."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- catalogue -------------------------------------------------------
    async def put_items(self, source: str, items: list[dict[str, Any]], *, detailed: bool = False) -> None:
        """Cache items (upsert); a summary never replaces a detailed entry's data."""
        now = time.time()
        async with self.store.transaction() as db:
            for it in items:
                values = (source, it["id"], dumps(it), it.get("model_type"), int(it.get("downloads") or 0),
                          int(it.get("likes") or 0), int(it.get("trending_score") or 0), int(detailed), now)
                if detailed:
                    await db.execute(
                        "INSERT OR REPLACE INTO hub_models(source, id, data, model_type, downloads, likes, trending,"
                        " detailed, fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
                else:
                    await db.execute(
                        "INSERT INTO hub_models(source, id, data, model_type, downloads, likes, trending, detailed,"
                        " fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(source, id) DO UPDATE SET"
                        " downloads=excluded.downloads, likes=excluded.likes, trending=excluded.trending,"
                        " data=CASE WHEN hub_models.detailed=1 THEN hub_models.data ELSE excluded.data END,"
                        " fetched_at=CASE WHEN hub_models.detailed=1 THEN hub_models.fetched_at"
                        " ELSE excluded.fetched_at END", values)

    async def get_item(self, source: str, hub_id: str) -> dict[str, Any] | None:
        """One cached item (with ``_fetched_at`` and ``_detailed``), or ``None``."""
        row = await self.store.fetchone("SELECT * FROM hub_models WHERE source=? AND id=?", (source, hub_id))
        return _item(row) if row else None

    async def get_items(self, source: str, ids: list[str]) -> list[dict[str, Any]]:
        """Cached items for ``ids``, in that order (missing ones skipped)."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = await self.store.fetchall(
            f"SELECT * FROM hub_models WHERE source=? AND id IN ({marks})", (source, *ids))
        by_id = {r["id"]: _item(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    async def search_items(self, source: str, query: str, model_type: str | None) -> list[dict[str, Any]]:
        """Cached items whose id or text matches ``query`` (case-insensitive), most downloaded first."""
        like = f"%{query.lower()}%"
        sql = "SELECT * FROM hub_models WHERE source=? AND (LOWER(id) LIKE ? OR LOWER(data) LIKE ?)"
        params: list[Any] = [source, like, like]
        if model_type:
            sql += " AND model_type=?"
            params.append(model_type)
        rows = await self.store.fetchall(sql + " ORDER BY downloads DESC, id", tuple(params))
        return [_item(r) for r in rows]

    async def top_items(self, source: str | None, order: str, limit: int) -> list[dict[str, Any]]:
        """Cached items ordered by ``order`` (trending, downloads or likes), best first."""
        col = {"trending": "trending DESC, downloads DESC", "downloads": "downloads DESC",
               "likes": "likes DESC"}[order]
        if source:
            rows = await self.store.fetchall(
                f"SELECT * FROM hub_models WHERE source=? ORDER BY {col}, id LIMIT ?", (source, limit))
        else:
            rows = await self.store.fetchall(f"SELECT * FROM hub_models ORDER BY {col}, id LIMIT ?", (limit,))
        return [{**_item(r), "source": r["source"]} for r in rows]

    async def type_counts(self, source: str | None) -> dict[str, int]:
        """Cached items per model type."""
        if source:
            rows = await self.store.fetchall(
                "SELECT model_type, COUNT(*) AS n FROM hub_models WHERE source=? GROUP BY model_type", (source,))
        else:
            rows = await self.store.fetchall("SELECT model_type, COUNT(*) AS n FROM hub_models GROUP BY model_type")
        return {(r["model_type"] or "other"): int(r["n"]) for r in rows}

    async def counts(self) -> dict[str, Any]:
        """Cached items per source, and the oldest and newest fetch time."""
        rows = await self.store.fetchall(
            "SELECT source, COUNT(*) AS n, MIN(fetched_at) AS oldest, MAX(fetched_at) AS newest"
            " FROM hub_models GROUP BY source")
        return {r["source"]: {"count": int(r["n"]), "oldest": r["oldest"], "newest": r["newest"]} for r in rows}

    # -- searches --------------------------------------------------------
    async def put_search(self, source: str, query: str, model_type: str | None, ids: list[str]) -> None:
        """Remember which ids a search returned."""
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO hub_searches(source, query, model_type, ids, fetched_at)"
                " VALUES (?, ?, ?, ?, ?)", (source, query, model_type or "", dumps(ids), time.time()))

    async def get_search(self, source: str, query: str, model_type: str | None) -> tuple[list[str], float] | None:
        """The ids of a remembered search and when it ran, or ``None``."""
        row = await self.store.fetchone(
            "SELECT ids, fetched_at FROM hub_searches WHERE source=? AND query=? AND model_type=?",
            (source, query, model_type or ""))
        return (json.loads(row["ids"]), row["fetched_at"]) if row else None

    # -- favourites ------------------------------------------------------
    async def add_favorite(self, source: str, hub_id: str) -> bool:
        """Mark a favourite; False if it already was one."""
        async with self.store.transaction() as db:
            cur = await db.execute(
                "INSERT OR IGNORE INTO hub_favorites(source, id, created_at) VALUES (?, ?, ?)",
                (source, hub_id, time.time()))
            return cur.rowcount > 0

    async def remove_favorite(self, source: str, hub_id: str) -> bool:
        """Unmark a favourite; False if it was not one."""
        async with self.store.transaction() as db:
            cur = await db.execute("DELETE FROM hub_favorites WHERE source=? AND id=?", (source, hub_id))
            return cur.rowcount > 0

    async def favorites(self, source: str | None = None) -> list[dict[str, Any]]:
        """Favourites, newest first."""
        if source:
            return await self.store.fetchall(
                "SELECT source, id, created_at FROM hub_favorites WHERE source=? ORDER BY created_at DESC", (source,))
        return await self.store.fetchall("SELECT source, id, created_at FROM hub_favorites ORDER BY created_at DESC")

    async def is_favorite(self, source: str, hub_id: str) -> bool:
        """True if ``hub_id`` is a favourite."""
        row = await self.store.fetchone("SELECT 1 AS x FROM hub_favorites WHERE source=? AND id=?", (source, hub_id))
        return row is not None

    # -- syncs -----------------------------------------------------------
    async def record_sync(self, source: str, count: int) -> float:
        """Record a finished sync; returns its time."""
        now = time.time()
        async with self.store.transaction() as db:
            await db.execute("INSERT OR REPLACE INTO hub_syncs(source, synced_at, count) VALUES (?, ?, ?)",
                             (source, now, count))
        return now

    async def syncs(self) -> dict[str, dict[str, Any]]:
        """The last sync of each source."""
        rows = await self.store.fetchall("SELECT source, synced_at, count FROM hub_syncs")
        return {r["source"]: {"synced_at": r["synced_at"], "count": r["count"]} for r in rows}
