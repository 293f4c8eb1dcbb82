"""SQL for the OpenAI Responses API's stored responses (``store: true``).

A row is one response: its input items (every item the model saw, earlier
turns' included), output items, usage and the request's other fields, as JSON
text. The core hands plain JSON-able values in and gets them back; it never
sees a column.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from llmd.store.db import dumps

if TYPE_CHECKING:
    from llmd.store.db import Store

_JSON = ("request", "output", "usage", "details")


class ResponseRepo:
    """Stored responses by id; pruned by age."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def put(self, row: dict[str, Any]) -> None:
        """Store (or replace) one response; ``request``, ``output``, ``usage`` and ``details`` are JSON values."""
        values = {k: (dumps(v) if k in _JSON and v is not None else v) for k, v in row.items()}
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO responses(id, created_at, completed_at, model, status, previous_response_id,"
                " request, output, usage, details) VALUES (:id, :created_at, :completed_at, :model, :status,"
                " :previous_response_id, :request, :output, :usage, :details)",
                values)

    async def get(self, response_id: str) -> dict[str, Any] | None:
        """The response as stored (its JSON columns parsed), or ``None``."""
        row = await self.store.fetchone("SELECT * FROM responses WHERE id=?", (response_id,))
        if row is None:
            return None
        for k in _JSON:
            if row[k] is not None:
                row[k] = json.loads(row[k])
        return row

    async def delete(self, response_id: str) -> bool:
        """Forget one response; False if there was none."""
        async with self.store.transaction() as db:
            cur = await db.execute("DELETE FROM responses WHERE id=?", (response_id,))
            return cur.rowcount > 0

    async def prune(self, before: float) -> int:
        """Forget the responses created before ``before`` (a Unix time); how many went."""
        async with self.store.transaction() as db:
            cur = await db.execute("DELETE FROM responses WHERE created_at < ?", (before,))
            return cur.rowcount
