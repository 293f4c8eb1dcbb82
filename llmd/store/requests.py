"""SQL for the request log: one row per inference request."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmd.store.db import Store


class RequestLogRepo:
    """Append-only log of inference requests."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(
        self,
        *,
        dialect: str,
        endpoint: str,
        model: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        ttft_ms: float | None,
        duration_ms: float | None,
        status: str,
        error: str | None = None,
    ) -> None:
        """Record one finished (or failed, or cancelled) request."""
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT INTO request_log(ts, dialect, endpoint, model, prompt_tokens, completion_tokens,"
                " ttft_ms, duration_ms, status, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (time.time(), dialect, endpoint, model, prompt_tokens, completion_tokens,
                 ttft_ms, duration_ms, status, error),
            )

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest rows first."""
        return await self.store.fetchall("SELECT * FROM request_log ORDER BY id DESC LIMIT ?", (limit,))

    async def totals(self) -> dict[str, Any]:
        """Counts and token sums over the whole log."""
        row = await self.store.fetchone(
            "SELECT COUNT(*) AS requests, COALESCE(SUM(prompt_tokens),0) AS prompt_tokens,"
            " COALESCE(SUM(completion_tokens),0) AS completion_tokens,"
            " COALESCE(SUM(status='error'),0) AS errors FROM request_log"
        )
        return row or {}

    async def average_duration_ms(self, start: float, end: float) -> float | None:
        """The mean duration of the requests that finished in ``[start, end)``; ``None`` if there were none."""
        row = await self.store.fetchone(
            "SELECT AVG(duration_ms) AS avg_ms FROM request_log WHERE ts >= ? AND ts < ?", (start, end))
        return row["avg_ms"] if row else None

    async def window_by_model(self, start: float, end: float, model: str | None = None) -> list[dict[str, Any]]:
        """Per model, the requests that finished in ``[start, end)``: counts, failures, durations and time to
        first token (ms), completion tokens."""
        where, params = "ts >= ? AND ts < ? AND model IS NOT NULL", [start, end]
        if model is not None:
            where += " AND model = ?"
            params.append(model)
        return await self.store.fetchall(
            "SELECT model, COUNT(*) AS requests, COALESCE(SUM(status IN ('error','shutdown')),0) AS failed,"
            " AVG(duration_ms) AS avg_ms, MAX(duration_ms) AS max_ms, MIN(duration_ms) AS min_ms,"
            " AVG(ttft_ms) AS avg_ttft_ms, COALESCE(SUM(completion_tokens),0) AS completion_tokens"
            f" FROM request_log WHERE {where} GROUP BY model ORDER BY model", tuple(params))

    async def model_stats(self, model: str, *, recent_window_s: float = 60.0) -> dict[str, Any]:
        """Per-model figures of the log: counts, failures, durations, tokens, and the last minute's count.

        Cancelled requests count as requests but not as failures; errors and
        shutdowns are failures.
        """
        now = time.time()
        row = await self.store.fetchone(
            "SELECT COUNT(*) AS requests,"
            " COALESCE(SUM(status IN ('error','shutdown')),0) AS failed,"
            " AVG(duration_ms) AS avg_duration_ms, MAX(duration_ms) AS max_duration_ms,"
            " MIN(duration_ms) AS min_duration_ms, AVG(ttft_ms) AS avg_ttft_ms,"
            " COALESCE(SUM(duration_ms),0) AS duration_ms_sum,"
            " COALESCE(SUM(prompt_tokens),0) AS prompt_tokens,"
            " COALESCE(SUM(completion_tokens),0) AS completion_tokens,"
            " COALESCE(SUM(ts >= ?),0) AS recent, MAX(ts) AS last_ts"
            " FROM request_log WHERE model=?",
            (now - recent_window_s, model),
        )
        return {**(row or {}), "recent_window_s": recent_window_s}
