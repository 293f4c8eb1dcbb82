"""Pure translators of the LLaMA Local API's shapes."""

from __future__ import annotations

from typing import Any

from llmd.core.fleet import Runtime
from llmd.core.monitor import Health
from llmd.core.types import ChatMessage, GenerateRequest, SamplingParams
from llmd.errors import LlmdError
from llmd.http.format import memory_fields
from llmd.http.llama_local.schemas import GenerateBody

DIALECT = "llama_local"


def generate_from_request(body: GenerateBody) -> GenerateRequest:
    """``/generate`` in core terms: by default the prompt is one user turn."""
    params = SamplingParams(max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
                            top_k=body.top_k, repeat_penalty=body.repeat_penalty)
    if body.raw:
        return GenerateRequest(prompt=body.prompt, model=body.model, params=params,
                               dialect=DIALECT, endpoint="/generate")
    return GenerateRequest(messages=(ChatMessage("user", body.prompt),), model=body.model, params=params,
                           dialect=DIALECT, endpoint="/generate")


def health_body(health: Health) -> dict[str, Any]:
    """The shared ``/health`` body (docs/api.md): the LLaMA Local API's status wins, the LLM Manager's join."""
    details = {
        "default_model": health.default_model,
        "store": "ok" if health.store_ok else "error",
        "shutting_down": health.shutting_down,
        "uptime_s": health.uptime_s,
        "active_streams": health.active_streams,
        "deployments": [{"model": d.model, "deployment_id": d.deployment_id, "state": d.state.value,
                         **memory_fields(d), "pinned": d.pinned, "queued": d.queued,
                         "active": d.active, "device": d.device} for d in health.deployments],
        "auth": health.auth,
        "memory_budget_mb": round(health.memory_budget_bytes / (1 << 20), 1),
        "memory_budget_source": health.memory_budget_source,
    }
    return {"status": health.status, "model_loaded": health.model_loaded,
            "service": "llmd", "version": health.version, "details": details}


def model_info(rt: Runtime) -> dict[str, Any]:
    """``GET /model-info``: the loaded default model's file, context and default sampling."""
    s = rt.sampling
    return {
        "path": rt.model.path, "loaded": True, "n_ctx": rt.n_ctx, "n_gpu_layers": rt.n_gpu_layers,
        "temperature": s["temperature"], "top_p": s["top_p"], "top_k": s["top_k"],
        "repeat_penalty": s["repeat_penalty"], "max_tokens": s["max_tokens"], "stream": True,
        "model": rt.model.name, "architecture": rt.model.architecture, "quantization": rt.model.quantization,
        "device": rt.device,
    }


def error_body(err: LlmdError) -> dict[str, Any]:
    """The LLaMA Local API's error envelope."""
    return {"detail": err.message}


def error_event(err: LlmdError) -> str:
    """The in-stream error marker of the LLaMA Local API."""
    return f"[ERROR {err.code}: {err.message}]"

