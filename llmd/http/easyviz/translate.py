"""Pure translators between the EasyVizAI API's shapes and core types."""

from __future__ import annotations

import json
from typing import Any

import pydantic

from llmd.core.deployment import DeploymentInfo
from llmd.core.models import ModelView
from llmd.core.monitor import Health
from llmd.core.types import ChatMessage, GenerateRequest, GenerationResult, SamplingParams
from llmd.errors import LlmdError, ValidationError
from llmd.http.body import load_json_object, validation_error
from llmd.http.easyviz.schemas import WS_MESSAGES, GenerateBody, Parameters

DIALECT = "easyviz"


def error_message(err: LlmdError) -> str:
    """The text of ``{"error": ...}``; an unknown model's error lists the available ones."""
    details = err.details if isinstance(err.details, dict) else {}
    available = details.get("available")
    if err.code == "model_not_found" and isinstance(available, list):
        return f"{err.message}; available models: {', '.join(available) or '(none)'}"
    return err.message


def error_body(err: LlmdError) -> dict[str, Any]:
    """The EasyVizAI API's error envelope."""
    return {"error": error_message(err)}


def sampling(parameters: Parameters | None) -> SamplingParams:
    """``parameters`` in core terms; ``do_sample: false`` is greedy (temperature 0)."""
    if parameters is None:
        return SamplingParams()
    temperature = parameters.temperature
    if parameters.do_sample is False:
        temperature = 0.0
    return SamplingParams(max_tokens=parameters.max_length, temperature=temperature, top_p=parameters.top_p)


def generate_request(body: GenerateBody, endpoint: str) -> GenerateRequest:
    """The prompt is the user's turn, rendered through the model's chat template."""
    return GenerateRequest(messages=(ChatMessage("user", body.prompt),), model=body.model,
                           params=sampling(body.parameters), dialect=DIALECT, endpoint=endpoint)


def generate_response(result: GenerationResult, model: str, prompt: str) -> dict[str, Any]:
    """``{"response", "model", "prompt"}``, plus ``finish_reason`` and ``usage``."""
    return {"response": result.text, "model": model, "prompt": prompt,
            "finish_reason": result.finish_reason.value, "usage": result.usage.to_dict()}


def device(running: list[DeploymentInfo], current: str | None) -> str:
    """Where the current model runs (``cpu`` or ``cuda``); else any loaded model's; ``cpu`` if none is."""
    for d in running:
        if d.model == current and d.device:
            return d.device
    for d in running:
        if d.device:
            return d.device
    return "cpu"


def health_body(health: Health) -> tuple[dict[str, Any], int]:
    """``GET /api/v1/llm/health/``: ``healthy``, ``degraded`` (current model not loaded) or ``unhealthy`` (503)."""
    status = {"ok": "healthy", "model_not_loaded": "degraded"}.get(health.status, "unhealthy")
    running = [d for d in health.deployments if d.running]
    body = {
        "status": status,
        "device": device(running, health.default_model),
        "loaded_models": [d.model for d in running],
        "current_model": health.default_model,
        "active_connections": health.active_streams,
    }
    return body, 503 if status == "unhealthy" else 200


def models_body(views: list[ModelView]) -> dict[str, Any]:
    """``GET /api/v1/llm/models/``, plus ``aliases`` (alias -> name)."""
    running = [v.deployment for v in views if v.loaded and v.deployment is not None]
    current = next((v.model.name for v in views if v.default), None)
    return {
        "current_model": current,
        "loaded_models": [d.model for d in running],
        "device": device(running, current),
        "available_models": [v.model.name for v in views],
        "aliases": {a: v.model.name for v in views for a in v.model.aliases},
    }


def model_body(view: ModelView) -> dict[str, Any]:
    """``GET /api/v1/llm/models/{model_key}/``: ``config`` carries the file and default sampling."""
    model, dep = view.model, view.deployment
    return {
        "name": model.name,
        "loaded": view.loaded,
        "config": {
            "name": model.metadata.get("name") or model.name,
            "model_path": model.path,
            "type": "causal_lm",
            "device": dep.device if view.loaded and dep is not None else None,
            "max_length": view.sampling.get("max_tokens"),
            "temperature": view.sampling.get("temperature"),
            "top_p": view.sampling.get("top_p"),
            "architecture": model.architecture,
            "context_length": model.context_length,
            "quantization": model.quantization,
            "size_bytes": model.size_bytes,
        },
        "aliases": list(model.aliases),
        "state": view.state.value,
    }


# -- WebSocket ----------------------------------------------------------------

def parse_ws_message(raw: str | bytes) -> Any:
    """A client message as one of the schemas' types; raises a typed error naming the problem."""
    data = load_json_object(raw, what="the message", field="message")
    kind = data.get("type")
    schema = WS_MESSAGES.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ValidationError(f"unknown message type {kind!r}; expected one of: {', '.join(WS_MESSAGES)}",
                              field="type")
    try:
        return schema.model_validate(data, strict=True)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None


def ws_error(err: LlmdError, **extra: Any) -> dict[str, Any]:
    """``{"type": "error", "error": "..."}`` (plus ``code``, and ``extra``)."""
    return {"type": "error", "error": error_message(err), "code": err.code, **extra}


def ws_chunk(text: str, model: str) -> dict[str, Any]:
    """One streamed piece of the answer."""
    return {"type": "assistant_chunk", "chunk": text, "model": model}


def _timing(result: GenerationResult) -> dict[str, float]:
    t = result.timings
    return {"ttft": round(t.ttft_s, 4), "duration": round(t.duration_s, 4), "queued": round(t.queued_s, 4),
            "tokens_per_second": round(t.decode_tps, 2)}


def ws_end(result: GenerationResult, model: str, *, stream: bool) -> dict[str, Any]:
    """The closing message of an answer: ``assistant_done`` after chunks, ``assistant_message`` without."""
    return {"type": "assistant_done" if stream else "assistant_message", "content": result.text,
            "model": model, "finish_reason": result.finish_reason.value, "usage": result.usage.to_dict(),
            "timing": _timing(result)}


def ws_model_switched(name: str) -> dict[str, Any]:
    """The acknowledgement of ``model_switch``."""
    return {"type": "model_switched", "model": name}


def dumps(obj: Any) -> str:
    """Compact JSON text for a WebSocket frame."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
