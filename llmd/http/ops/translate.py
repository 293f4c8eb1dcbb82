"""Pure translators of seed 002's shapes (no I/O, no state).

Seed 002's generation answers are OpenAI's completion and chat objects with
fewer fields, so the OpenAI dialect's renderers are reused: their extra fields
(``object``, ``logprobs``, ...) do not bother a seed-002 client.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from llmd.core.registry import Model
from llmd.core.types import ChatMessage, GenerateRequest, SamplingParams
from llmd.http.ops.schemas import ChatBody, GenerateBody, InferenceFields, StartSettings

DIALECT = "ops"


def iso(ts: float | None) -> str | None:
    """A Unix time as seed 002 writes it: ``2024-01-01T12:00:00Z``."""
    if not ts:
        return None
    when = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


# -- models --------------------------------------------------------------------------

def health(state: str) -> str:
    """Seed 002's ``health`` of a model in deployment ``state``."""
    return {"running": "healthy", "error": "unhealthy"}.get(state, "unknown")


def model_summary(model: Model, state: str, resource_usage: dict[str, Any] | None) -> dict[str, Any]:
    """One item of ``GET /api/models``."""
    return {
        "id": model.external_id, "name": model.name, "display_name": model.display_name or model.name,
        "framework": model.framework, "status": state, "health": health(state),
        "created_at": iso(model.created_at), "updated_at": iso(model.updated_at),
        "config": model_config(model), "resource_usage": resource_usage or {},
        "priority": model.priority, "tags": list(model.tags), "aliases": list(model.aliases),
    }


def model_config(model: Model) -> dict[str, Any]:
    """The model's ``config``; ``model_path`` always says where the model is."""
    return {"model_path": model.path, **model.config}


def model_detail(model: Model, state: str, resource_usage: dict[str, Any] | None,
                 performance_stats: dict[str, Any], error: str | None = None) -> dict[str, Any]:
    """``GET /api/models/{model_id}``: the summary plus description, requirements, statistics and file facts."""
    return {
        **model_summary(model, state, resource_usage),
        "description": model.description,
        "resource_requirements": dict(model.resource_requirements),
        "performance_stats": performance_stats,
        "error": error,
        "source": model.source, "format": model.format, "architecture": model.architecture,
        "context_length": model.context_length, "quantization": model.quantization,
        "size_bytes": model.size_bytes,
    }


def created(model: Model) -> dict[str, Any]:
    """The answer of ``POST /api/models``."""
    return {"id": model.external_id, "name": model.name, "status": "created", "framework": model.framework,
            "message": f"model '{model.name}' created"}


def page(items: list[Any], number: int, size: int) -> dict[str, Any]:
    """Seed 002's pagination block around the items of page ``number``."""
    return {"items": items[(number - 1) * size: number * size], "total": len(items), "page": number,
            "size": size, "pages": math.ceil(len(items) / size)}


def performance(row: dict[str, Any]) -> dict[str, Any]:
    """``performance_stats`` from the request log's per-model figures (times in seconds)."""
    requests = row.get("requests") or 0
    failed = row.get("failed") or 0
    seconds = lambda ms: round(ms / 1000, 4) if ms is not None else None  # noqa: E731
    duration_s = (row.get("duration_ms_sum") or 0) / 1000
    return {
        "total_requests": requests,
        "successful_requests": requests - failed,
        "failed_requests": failed,
        "avg_response_time": seconds(row.get("avg_duration_ms")),
        "max_response_time": seconds(row.get("max_duration_ms")),
        "min_response_time": seconds(row.get("min_duration_ms")),
        "avg_time_to_first_token": seconds(row.get("avg_ttft_ms")),
        "requests_per_second": round((row.get("recent") or 0) / row.get("recent_window_s", 60), 4),
        "tokens_per_second": round((row.get("completion_tokens") or 0) / duration_s, 2) if duration_s else 0.0,
        "prompt_tokens": row.get("prompt_tokens") or 0,
        "completion_tokens": row.get("completion_tokens") or 0,
        "error_rate": round(failed / requests, 4) if requests else 0.0,
        "last_request_at": iso(row.get("last_ts")),
    }


def start_settings(settings: StartSettings | None) -> dict[str, Any] | None:
    """The settings a start asks for, in core terms (``max_model_len`` is ``n_ctx``)."""
    if settings is None:
        return None
    out = settings.model_dump(exclude_none=True)
    if "max_model_len" in out:
        out.setdefault("n_ctx", out["max_model_len"])
    return out or None


def accepted(task: Any, model: Model, action: str) -> dict[str, Any]:
    """The 202 answer of start, stop and restart."""
    verb = {"start": "starting", "stop": "stopping", "restart": "restarting"}[action]
    return {"message": f"{verb} model '{model.name}'", "task_id": task.id, "model_id": model.external_id,
            "status_url": f"/api/tasks/{task.id}"}


def log_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """One log line: ``{"timestamp", "level", "message"}`` (levels upper case, as the seed shows)."""
    return {"timestamp": iso(entry.get("ts")), "level": str(entry.get("level", "info")).upper(),
            "message": entry.get("message", "")}


# -- inference -----------------------------------------------------------------------

def _params(body: InferenceFields) -> SamplingParams:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or ())
    return SamplingParams(max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
                          top_k=body.top_k, stop=tuple(s for s in stop if s))


def generate_request(body: GenerateBody, model: Model, endpoint: str) -> GenerateRequest:
    """A seed-002 generation: the prompt is continued as it is."""
    return GenerateRequest(prompt=body.prompt, model=model.name, params=_params(body),
                           dialect=DIALECT, endpoint=endpoint)


def chat_request(body: ChatBody, model: Model, endpoint: str) -> GenerateRequest:
    """A seed-002 chat completion, through the model's chat template."""
    return GenerateRequest(messages=tuple(ChatMessage(m.role, m.content) for m in body.messages),
                           model=model.name, params=_params(body), dialect=DIALECT, endpoint=endpoint)
