"""SQL for deployments: which model is loaded with which settings, and its state."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from llmd.store.db import dumps

if TYPE_CHECKING:
    from llmd.store.db import Store


class DeploymentRepo:
    """Deployment rows; the live objects are in ``llmd.core.deployments``."""

    def __init__(self, store: "Store") -> None:
        self.store = store

    async def upsert(self, model_name: str, state: str, settings: dict[str, Any], error: str | None = None) -> None:
        """Record the state of the deployment of ``model_name`` (one per model for now)."""
        now = time.time()
        async with self.store.transaction() as db:
            cur = await db.execute(
                "UPDATE deployments SET state=?, settings=?, error=?, updated_at=?"
                " WHERE model_id=(SELECT id FROM models WHERE name=?)",
                (state, dumps(settings), error, now, model_name),
            )
            if cur.rowcount == 0:
                await db.execute(
                    "INSERT INTO deployments(model_id, state, settings, error, created_at, updated_at)"
                    " SELECT id, ?, ?, ?, ?, ? FROM models WHERE name=?",
                    (state, dumps(settings), error, now, now, model_name),
                )

    async def list(self) -> list[dict[str, Any]]:
        """All deployment rows with their model's name."""
        rows = await self.store.fetchall(
            "SELECT d.*, m.name AS model FROM deployments d JOIN models m ON m.id=d.model_id ORDER BY d.id"
        )
        for r in rows:
            r["settings"] = json.loads(r["settings"] or "{}")
        return rows

    async def mark_all(self, from_states: tuple[str, ...], to_state: str) -> None:
        """Move every deployment in ``from_states`` to ``to_state`` (start-up recovery)."""
        marks = ",".join("?" * len(from_states))
        async with self.store.transaction() as db:
            await db.execute(
                f"UPDATE deployments SET state=?, updated_at=? WHERE state IN ({marks})",
                (to_state, time.time(), *from_states),
            )
