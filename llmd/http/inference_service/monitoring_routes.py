"""LLM Inference Service API routes: ``GET /api/monitoring/metrics`` (the metrics history) and
``GET /api/monitoring/performance`` (requests per model over a time range)."""

from __future__ import annotations

import datetime
from typing import Any, Literal, Optional

from pydantic import Field, field_validator
from quart import jsonify

from llmd.core import Core
from llmd.core.history import MetricsWindow, Performance
from llmd.http.body import parse_query
from llmd.http.fields import StrictModel
from llmd.http.format import iso
from llmd.http.routing import Dialect


class MetricsQuery(StrictModel):
    """``GET /api/monitoring/metrics``."""

    start_time: Optional[datetime.datetime] = Field(default=None, description=(
        "ISO 8601 (UTC when it names no offset); default: an hour before end_time."))
    end_time: Optional[datetime.datetime] = Field(default=None, description="ISO 8601; default: now.")
    metric_type: Optional[Literal["gpu", "cpu", "memory", "disk", "model"]] = Field(default=None, description=(
        "Which fields: gpu (gpu_utilization %, gpu_memory_used MiB), cpu (cpu_percent, load_1m), memory "
        "(memory_percent, memory_used and llmd's process_memory in MiB), disk (disk_percent and disk_used in MiB "
        "of the models directory's file system) or model (queue_depth, active_slots, tokens_per_second, ttft in "
        "s, an external engine's engine_memory in MiB; per model under `models`); default: cpu, memory and gpu."))
    interval: Literal["raw", "1m", "5m", "1h", "1d"] = Field(default="5m", description=(
        "The buckets' length; raw: every sample as taken (a window of at most 2 hours)."))

    @field_validator("start_time", "end_time")
    @classmethod
    def _in_range(cls, value: datetime.datetime | None) -> datetime.datetime | None:
        """Between 1970 and 9998 in UTC: the history holds nothing earlier, and the answer writes years of
        four digits."""
        if value is not None and not 0 <= _seconds(value) < _LATEST:  # type: ignore[operator]
            raise ValueError("must be a time between 1970-01-01 and 9998-12-31 (UTC)")
        return value


class MetricsResponse(StrictModel):
    """The buckets (each field its average over the bucket) and a summary of the window."""

    metrics: list[dict[str, Any]]
    summary: dict[str, Optional[float]] = Field(description=(
        "avg_<field> and max_<field> over the window; avg_response_time: the mean seconds of the requests "
        "that finished in it (null when there were none)."))
    interval: str
    start_time: str
    end_time: str


_LATEST = datetime.datetime(9999, 1, 1, tzinfo=datetime.UTC).timestamp()


class PerformanceQuery(StrictModel):
    """``GET /api/monitoring/performance``."""

    model_id: Optional[str] = Field(default=None, min_length=1, max_length=256, description=(
        "One model (its id, name or alias); default: every model with requests in the range."))
    time_range: Literal["1h", "24h", "7d", "30d"] = Field(default="24h", description="Up to now.")


class PerformanceResponse(StrictModel):
    """Per model: requests, successes, failures, response times (s), requests per second, error rate;
    and the box's averages over the range."""

    time_range: str
    models: list[dict[str, Any]]
    system: dict[str, Optional[float]]


def render_performance(p: Performance) -> dict[str, Any]:
    """The document's shape."""
    models = [{"model_id": m.model_id, "model_name": m.model_name, "total_requests": m.stats.requests,
               "successful_requests": m.stats.succeeded, "failed_requests": m.stats.failed,
               "avg_response_time": _round(m.stats.avg_duration_s), "max_response_time": _round(m.stats.max_duration_s),
               "min_response_time": _round(m.stats.min_duration_s),
               # six decimals: one request an hour is 0.000278, not 0.0
               "requests_per_second": round(m.stats.requests_per_second, 6), "error_rate": _round(m.stats.error_rate)}
              for m in p.models]
    return {"time_range": p.time_range, "models": models, "system": {k: _round(v) for k, v in p.system.items()}}


def _seconds(value: datetime.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp()


def render(window: MetricsWindow) -> dict[str, Any]:
    """The document's shape: ``{"metrics": [{"timestamp", <fields>}], "summary": {...}}``."""
    metrics = []
    for row in window.rows:
        item: dict[str, Any] = {"timestamp": iso(row.ts), **{k: _round(v) for k, v in row.values.items()}}
        if row.models:
            item["models"] = [{"model_name": name, **{k: _round(v) for k, v in vals.items()}}
                              for name, vals in sorted(row.models.items())]
        metrics.append(item)
    return {"metrics": metrics, "summary": {k: _round(v) for k, v in window.summary.items()},
            "interval": window.interval, "start_time": iso(window.start), "end_time": iso(window.end)}


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def register(d: Dialect, core: Core) -> None:
    """Declare the monitoring routes."""

    @d.route("/api/monitoring/metrics", summary="The metrics history", query=MetricsQuery,
             response=MetricsResponse, auth="admin")
    async def monitoring_metrics() -> Any:
        """The box's (and the models') figures from the history in SQLite, in buckets of ``interval``."""
        q = parse_query(MetricsQuery)
        window = await core.history.window(start=_seconds(q.start_time), end=_seconds(q.end_time),
                                           metric_type=q.metric_type, interval=q.interval)
        return jsonify(render(window))

    @d.route("/api/monitoring/performance", summary="Requests per model over a time range", query=PerformanceQuery,
             response=PerformanceResponse, auth="admin")
    async def monitoring_performance() -> Any:
        """From the request log (per model) and the metrics history (the box's averages); never invented."""
        q = parse_query(PerformanceQuery)
        return jsonify(render_performance(await core.history.performance(q.time_range, q.model_id)))
