"""SQL for the model registry: models and their aliases."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from llmd.store.db import dumps

if TYPE_CHECKING:
    from llmd.store.db import Store

_COLUMNS = (
    "name", "source", "path", "format", "architecture", "context_length",
    "quantization", "size_bytes", "chat_template", "metadata",
    "display_name", "description", "framework", "priority", "config", "resource_requirements", "tags",
)
# JSON columns and the empty value each one holds when a caller gives none.
_JSON = {"metadata": {}, "config": {}, "resource_requirements": {}, "tags": []}
# Columns with a NOT NULL default in the schema: a missing value takes it.
_DEFAULTS = {"framework": "llama.cpp", "priority": 5}


def _value(column: str, value: Any) -> Any:
    if column in _JSON:
        return dumps(value if value is not None else _JSON[column])
    if value is None and column in _DEFAULTS:
        return _DEFAULTS[column]
    return value


def _row(row: dict[str, Any] | None, aliases: list[str] | None = None) -> dict[str, Any] | None:
    if row is None:
        return None
    row = dict(row)
    for column, empty in _JSON.items():
        raw = row.get(column)
        row[column] = json.loads(raw) if raw else type(empty)()
    row["aliases"] = aliases or []
    return row


class ModelRepo:
    """Models and aliases."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _aliases(self, model_id: int) -> list[str]:
        rows = await self.store.fetchall(
            "SELECT alias FROM model_aliases WHERE model_id=? ORDER BY alias", (model_id,)
        )
        return [r["alias"] for r in rows]

    async def list(self) -> list[dict[str, Any]]:
        """All models, by name, each with its aliases."""
        rows = await self.store.fetchall("SELECT * FROM models ORDER BY name")
        aliases = await self.store.fetchall("SELECT alias, model_id FROM model_aliases ORDER BY alias")
        by_model: dict[int, list[str]] = {}
        for a in aliases:
            by_model.setdefault(a["model_id"], []).append(a["alias"])
        return [_row(r, by_model.get(r["id"], [])) for r in rows]  # type: ignore[misc]

    async def get(self, name_or_alias: str) -> dict[str, Any] | None:
        """A model by name, else by alias; ``None`` if neither matches."""
        row = await self.store.fetchone("SELECT * FROM models WHERE name=?", (name_or_alias,))
        if row is None:
            row = await self.store.fetchone(
                "SELECT m.* FROM models m JOIN model_aliases a ON a.model_id=m.id WHERE a.alias=?",
                (name_or_alias,),
            )
        if row is None:
            return None
        return _row(row, await self._aliases(row["id"]))

    async def get_by_id(self, model_id: int) -> dict[str, Any] | None:
        """A model by its row id (the LLM Inference Service API's ``model-<n>``); ``None`` if there is none."""
        row = await self.store.fetchone("SELECT * FROM models WHERE id=?", (model_id,))
        if row is None:
            return None
        return _row(row, await self._aliases(row["id"]))

    async def insert(self, fields: dict[str, Any], aliases: list[str] = ()) -> dict[str, Any]:
        """Insert a model and its aliases in one transaction."""
        now = time.time()
        values = [_value(c, fields.get(c)) for c in _COLUMNS]
        async with self.store.transaction() as db:
            cur = await db.execute(
                f"INSERT INTO models ({', '.join(_COLUMNS)}, created_at, updated_at) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))}, ?, ?)",
                (*values, now, now),
            )
            model_id = cur.lastrowid
            for alias in aliases:
                await db.execute(
                    "INSERT OR REPLACE INTO model_aliases(alias, model_id) VALUES (?, ?)", (alias, model_id)
                )
        return await self.get(fields["name"])  # type: ignore[return-value]

    async def update(self, name: str, fields: dict[str, Any]) -> None:
        """Update some columns of a model."""
        cols = [c for c in fields if c in _COLUMNS]
        if not cols:
            return
        values = [_value(c, fields[c]) for c in cols]
        async with self.store.transaction() as db:
            await db.execute(
                f"UPDATE models SET {', '.join(c + '=?' for c in cols)}, updated_at=? WHERE name=?",
                (*values, time.time(), name),
            )

    async def set_alias(self, alias: str, name: str) -> None:
        """Point ``alias`` at the model ``name``, replacing any earlier target."""
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO model_aliases(alias, model_id) SELECT ?, id FROM models WHERE name=?",
                (alias, name),
            )

    async def delete_alias(self, alias: str) -> bool:
        """Remove ``alias`` (the model stays). True if it existed."""
        async with self.store.transaction() as db:
            cur = await db.execute("DELETE FROM model_aliases WHERE alias=?", (alias,))
            return cur.rowcount > 0

    async def delete(self, name: str) -> bool:
        """Delete a model (its aliases go with it). True if it existed."""
        async with self.store.transaction() as db:
            cur = await db.execute("DELETE FROM models WHERE name=?", (name,))
            return cur.rowcount > 0
