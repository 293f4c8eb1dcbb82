"""The request log: every finished generation, in the store and in the metrics; and figures read back.

Deployments call :meth:`RequestLog.record` on the event loop when a generation
ends (completed, cut short, failed or cancelled). The metrics move at once;
the store write is background work that shutdown waits for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from llmd.core.background import Background
from llmd.core.metrics import Metrics
from llmd.core.types import GenerationResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestStats:
    """A model's figures from the request log; durations in seconds."""

    requests: int = 0
    failed: int = 0
    avg_duration_s: float | None = None
    max_duration_s: float | None = None
    min_duration_s: float | None = None
    avg_ttft_s: float | None = None
    requests_per_second: float = 0.0  # over the window read (model_stats: the last minute)
    tokens_per_second: float = 0.0  # completion tokens over the time spent generating them
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_request_at: float | None = None

    @property
    def succeeded(self) -> int:
        """Requests that did not fail."""
        return self.requests - self.failed

    @property
    def error_rate(self) -> float:
        """Failed requests over all requests."""
        return self.failed / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class RequestTotals:
    """Counts and token sums over the whole log."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0


def _seconds(ms: float | None) -> float | None:
    return ms / 1000 if ms is not None else None


class RequestLog:
    """Records finished generations; reads per-model statistics and totals."""

    def __init__(self, repo: Any, metrics: Metrics, background: Background) -> None:
        self.repo = repo  # llmd.store.requests.RequestLogRepo
        self.metrics = metrics
        self.background = background

    def record(self, meta: dict[str, Any], result: GenerationResult) -> None:
        """Count one finished request (``meta`` has its dialect and endpoint) and queue its row."""
        self.metrics.observe_request(meta, result)
        self.background.spawn(self.repo.add(
            dialect=meta.get("dialect", "core"), endpoint=meta.get("endpoint", ""), model=result.model,
            prompt_tokens=result.usage.prompt_tokens, completion_tokens=result.usage.completion_tokens,
            ttft_ms=result.timings.ttft_s * 1000 if result.usage.completion_tokens else None,
            duration_ms=result.timings.duration_s * 1000, status=result.finish_reason.status,
            error=result.error.message if result.error is not None else None,
        ))

    async def model_stats(self, model: str) -> RequestStats:
        """Per-model figures: counts, failures, durations, time to first token, throughput."""
        row = await self.repo.model_stats(model)
        duration_s = (row.get("duration_ms_sum") or 0) / 1000
        return RequestStats(
            requests=row.get("requests") or 0, failed=row.get("failed") or 0,
            avg_duration_s=_seconds(row.get("avg_duration_ms")), max_duration_s=_seconds(row.get("max_duration_ms")),
            min_duration_s=_seconds(row.get("min_duration_ms")), avg_ttft_s=_seconds(row.get("avg_ttft_ms")),
            requests_per_second=(row.get("recent") or 0) / row.get("recent_window_s", 60),
            tokens_per_second=(row.get("completion_tokens") or 0) / duration_s if duration_s else 0.0,
            prompt_tokens=row.get("prompt_tokens") or 0, completion_tokens=row.get("completion_tokens") or 0,
            last_request_at=row.get("last_ts"))

    async def average_response_s(self, start: float, end: float) -> float | None:
        """The mean response time, in seconds, of the requests that finished in ``[start, end)``."""
        return _seconds(await self.repo.average_duration_ms(start, end))

    async def window_by_model(self, start: float, end: float, model: str | None = None) -> dict[str, RequestStats]:
        """Per model name, the requests that finished in ``[start, end)`` (failures: errors and shutdowns;
        cancelled requests count as requests, not failures); ``requests_per_second`` and
        ``tokens_per_second`` (completion tokens) over the window."""
        span = max(end - start, 1e-9)
        return {row["model"]: RequestStats(
            requests=row["requests"], failed=row["failed"], avg_duration_s=_seconds(row["avg_ms"]),
            max_duration_s=_seconds(row["max_ms"]), min_duration_s=_seconds(row["min_ms"]),
            avg_ttft_s=_seconds(row["avg_ttft_ms"]), completion_tokens=row["completion_tokens"],
            requests_per_second=row["requests"] / span, tokens_per_second=row["completion_tokens"] / span)
            for row in await self.repo.window_by_model(start, end, model)}

    async def totals(self) -> RequestTotals:
        """Counts and token sums over the whole log."""
        row = await self.repo.totals()
        return RequestTotals(requests=row.get("requests") or 0, prompt_tokens=row.get("prompt_tokens") or 0,
                             completion_tokens=row.get("completion_tokens") or 0, errors=row.get("errors") or 0)
