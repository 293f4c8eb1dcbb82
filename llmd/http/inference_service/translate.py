"""Pure translators of the LLM Inference Service API's shapes (no I/O, no state).

This API's generation answers are OpenAI's completion and chat objects with
fewer fields, so the shared OpenAI renderers are used: their extra fields
(``object``, ``logprobs``, ...) do not bother its clients.
"""

from __future__ import annotations

from typing import Any

from llmd.core.modellog import LogEntry
from llmd.core.models import Accepted, DeletedModel, Lifecycle, ModelDetail, ModelView
from llmd.core.monitor import ProcessUsage
from llmd.core.registry import Model
from llmd.core.requestlog import RequestStats
from llmd.core.tasks import Task
from llmd.core.types import ChatMessage, GenerateRequest, SamplingParams
from llmd.http.format import iso, round_or_none
from llmd.http.inference_service.envelope import error_code
from llmd.http.inference_service.schemas import ChatBody, GenerateBody, InferenceFields, StartSettings

DIALECT = "inference_service"
MB = 1 << 20


# -- models --------------------------------------------------------------------------

def health(state: str) -> str:
    """This API's ``health`` of a model in deployment ``state``."""
    return {"running": "healthy", "error": "unhealthy"}.get(state, "unknown")


def resource_usage(u: ProcessUsage | None) -> dict[str, Any]:
    """``resource_usage``: the memory and CPU of the process serving a running model (``{}`` otherwise)."""
    if u is None:
        return {}
    p = u.process
    return {"memory": round(u.memory_bytes / MB), "memory_bytes": u.memory_bytes,
            "process_memory": round(p.rss_bytes / MB), "cpu_percent": round(p.cpu_percent, 1),
            "cpu_cores": round(p.cpu_percent / 100, 2), "gpu_memory": round(u.gpu_memory_bytes / MB),
            "gpu_memory_bytes": u.gpu_memory_bytes, "pid": p.pid, "threads": p.threads,
            "process": "external" if u.external else "llmd", "active_requests": u.deployment.active,
            "queued_requests": u.deployment.queued, "device": u.deployment.device,
            "deployment_id": u.deployment.deployment_id or None,
            # The in-process engine's estimate and measurement side by side (docs/deployments.md), MB as above.
            "memory_estimate": round(est["total"] / MB) if (est := u.deployment.memory_estimate) else None,
            "memory_measured": round(meas["total"] / MB) if (meas := u.deployment.memory_measured) else None}


def model_config(model: Model) -> dict[str, Any]:
    """The model's ``config``; ``model_path`` always says where the model is."""
    return {"model_path": model.path, **model.config}


def model_summary(v: ModelView) -> dict[str, Any]:
    """One item of ``GET /api/models``."""
    m, state = v.model, v.state.value
    return {
        "id": m.external_id, "name": m.name, "display_name": m.display_name or m.name,
        "framework": m.framework, "status": state, "health": health(state),
        "created_at": iso(m.created_at), "updated_at": iso(m.updated_at),
        "config": model_config(m), "resource_usage": resource_usage(v.usage),
        "priority": m.priority, "tags": list(m.tags), "aliases": list(m.aliases),
    }


def performance(s: RequestStats) -> dict[str, Any]:
    """``performance_stats`` from the request log's per-model figures (times in seconds)."""
    return {
        "total_requests": s.requests,
        "successful_requests": s.succeeded,
        "failed_requests": s.failed,
        "avg_response_time": round_or_none(s.avg_duration_s),
        "max_response_time": round_or_none(s.max_duration_s),
        "min_response_time": round_or_none(s.min_duration_s),
        "avg_time_to_first_token": round_or_none(s.avg_ttft_s),
        "requests_per_second": round(s.requests_per_second, 4),
        "tokens_per_second": round(s.tokens_per_second, 2),
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "error_rate": round(s.error_rate, 4),
        "last_request_at": iso(s.last_request_at),
    }


def model_detail(d: ModelDetail) -> dict[str, Any]:
    """``GET /api/models/{model_id}``: the summary plus description, requirements, statistics and file facts."""
    m = d.view.model
    return {
        **model_summary(d.view),
        "description": m.description,
        "resource_requirements": dict(m.resource_requirements),
        "performance_stats": performance(d.stats),
        "error": d.view.deployment.error if d.view.deployment is not None else None,
        "source": m.source, "format": m.format, "architecture": m.architecture,
        "context_length": m.context_length, "quantization": m.quantization,
        "size_bytes": m.size_bytes,
    }


def created(model: Model) -> dict[str, Any]:
    """The answer of ``POST /api/models``."""
    return {"id": model.external_id, "name": model.name, "status": "created", "framework": model.framework,
            "message": f"model '{model.name}' created"}


def deleted(d: DeletedModel) -> dict[str, Any]:
    """The answer of ``DELETE /api/models/{model_id}``."""
    return {"message": f"model '{d.model.name}' deleted", "id": d.model.external_id, "name": d.model.name,
            "file_removed": d.file_removed}


def start_settings(settings: StartSettings | None) -> dict[str, Any] | None:
    """The settings a start asks for, in core terms (``max_model_len`` is ``n_ctx``)."""
    if settings is None:
        return None
    out = settings.model_dump(exclude_none=True)
    if "max_model_len" in out:
        out.setdefault("n_ctx", out["max_model_len"])
    return out or None


def accepted(a: Accepted) -> dict[str, Any]:
    """The 202 answer of start, stop and restart."""
    verb = {"start": "starting", "stop": "stopping", "restart": "restarting"}[a.action]
    return {"message": f"{verb} model '{a.model.name}'", "task_id": a.task.id, "model_id": a.model.external_id,
            "status_url": f"/api/tasks/{a.task.id}"}


def _outcome(result: Any) -> Any:
    if not isinstance(result, Lifecycle):
        return result
    if result.deployment is None:
        return {"model_id": result.model.external_id, "status": "stopped", "was_running": result.was_running}
    d = result.deployment
    return {"model_id": result.model.external_id, "status": d.state.value, "deployment_id": d.deployment_id or None,
            "settings": d.settings}


def task_view(task: Task) -> dict[str, Any]:
    """A task as this API's clients read it: ``status`` and error codes in the document's spelling."""
    error = None
    if task.error:
        error = {**task.error, "code": error_code(task.error.get("code", "internal_error"))}
    return {"task_id": task.id, "kind": task.kind, "target": task.target, "state": task.state,
            "status": task.state, "message": task.message, "result": _outcome(task.result), "error": error,
            "created_at": iso(task.created_at), "started_at": iso(task.started_at),
            "finished_at": iso(task.finished_at)}


def log_entry(entry: LogEntry) -> dict[str, Any]:
    """One log line: ``{"timestamp", "level", "message"}`` (levels upper case, as the document shows)."""
    return {"timestamp": iso(entry.ts), "level": entry.level.upper(), "message": entry.message}


# -- inference -----------------------------------------------------------------------

def _params(body: InferenceFields) -> SamplingParams:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or ())
    return SamplingParams(max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
                          top_k=body.top_k, stop=tuple(s for s in stop if s))


def generate_request(body: GenerateBody, model_id: str, endpoint: str) -> GenerateRequest:
    """A generation on model ``model_id``: the prompt is continued as it is."""
    return GenerateRequest(prompt=body.prompt, model=model_id, params=_params(body),
                           dialect=DIALECT, endpoint=endpoint)


def chat_request(body: ChatBody, model_id: str, endpoint: str) -> GenerateRequest:
    """A chat completion on model ``model_id``, through the model's chat template."""
    return GenerateRequest(messages=tuple(ChatMessage(m.role, m.content) for m in body.messages),
                           model=model_id, params=_params(body), dialect=DIALECT, endpoint=endpoint)
