"""SQL for deployments: which model is loaded with which settings, and its state.

One row per model (a unique index since migration 0009): its id is the
deployment's id (``deploy_<id>``), stable across restarts of the model and of
the daemon, until the record is deleted.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from llmd.store.db import dumps

if TYPE_CHECKING:
    from llmd.store.db import Store

# Columns that ``save`` may write (besides state/settings/error).
_FIELDS = ("port", "pinned", "last_used", "started_at", "stopped_at", "stop_reason", "note", "model_source",
           "gpu_memory_utilization", "memory_bytes")

_SELECT = "SELECT d.*, m.name AS model FROM deployments d JOIN models m ON m.id=d.model_id"


def _row(r: dict[str, Any]) -> dict[str, Any]:
    r["settings"] = json.loads(r.get("settings") or "{}")
    if "pinned" in r:
        r["pinned"] = bool(r["pinned"])
    return r


class DeploymentRepo:
    """Deployment rows; the live deployments are in ``llmd.core.fleet``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def upsert(self, model_name: str, state: str, settings: dict[str, Any], error: str | None = None) -> None:
        """Record the state of the deployment of ``model_name`` (one per model)."""
        await self.save(model_name, state=state, settings=settings, error=error)

    async def save(self, model_name: str, **fields: Any) -> dict[str, Any] | None:
        """Create or update the row of ``model_name``'s deployment; returns it (None: no such model).

        Keys: ``state``, ``settings`` (dict), ``error`` and the columns of
        migration 0009 (port, pinned, last_used, ...). Keys left out keep their value.
        """
        now = time.time()
        cols: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "settings":
                cols["settings"] = dumps(value)
            elif key == "pinned":
                cols["pinned"] = 1 if value else 0
            elif key in ("state", "error") or key in _FIELDS:
                cols[key] = value
            else:
                raise KeyError(f"unknown deployment field {key!r}")
        async with self.store.transaction() as db:
            async with db.execute("SELECT id FROM models WHERE name=?", (model_name,)) as cur:
                mrow = await cur.fetchone()
            if mrow is None:
                return None
            model_id = mrow[0]
            async with db.execute("SELECT id FROM deployments WHERE model_id=?", (model_id,)) as cur:
                drow = await cur.fetchone()
            if drow is None:
                cols.setdefault("state", "stopped")
                cols.setdefault("settings", "{}")
                names = ["model_id", "created_at", "updated_at", *cols]
                await db.execute(
                    f"INSERT INTO deployments({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    (model_id, now, now, *cols.values()))
            elif cols:
                sets = ", ".join(f"{k}=?" for k in cols)
                await db.execute(f"UPDATE deployments SET {sets}, updated_at=? WHERE model_id=?",
                                 (*cols.values(), now, model_id))
            async with db.execute(_SELECT + " WHERE d.model_id=?", (model_id,)) as cur:
                row = await cur.fetchone()
        return _row(dict(row)) if row is not None else None

    async def get(self, dep_id: int) -> dict[str, Any] | None:
        """One row by id, with its model's name."""
        row = await self.store.fetchone(_SELECT + " WHERE d.id=?", (dep_id,))
        return _row(row) if row else None

    async def for_model(self, model_name: str) -> dict[str, Any] | None:
        """The row of ``model_name``'s deployment, if it has one."""
        row = await self.store.fetchone(_SELECT + " WHERE m.name=?", (model_name,))
        return _row(row) if row else None

    async def list(self, state: str | None = None) -> list[dict[str, Any]]:
        """All deployment rows (optionally in one state) with their model's name."""
        if state is None:
            rows = await self.store.fetchall(_SELECT + " ORDER BY d.id")
        else:
            rows = await self.store.fetchall(_SELECT + " WHERE d.state=? ORDER BY d.id", (state,))
        return [_row(r) for r in rows]

    async def delete(self, dep_id: int) -> bool:
        """Delete a row; False if there was none."""
        async with self.store.transaction() as db:
            cur = await db.execute("DELETE FROM deployments WHERE id=?", (dep_id,))
            return cur.rowcount > 0

    async def mark_all(self, from_states: tuple[str, ...], to_state: str) -> None:
        """Move every deployment in ``from_states`` to ``to_state`` (start-up recovery)."""
        marks = ",".join("?" * len(from_states))
        async with self.store.transaction() as db:
            await db.execute(
                f"UPDATE deployments SET state=?, stop_reason=COALESCE(stop_reason, 'shutdown'), updated_at=?"
                f" WHERE state IN ({marks})",
                (to_state, time.time(), *from_states),
            )
