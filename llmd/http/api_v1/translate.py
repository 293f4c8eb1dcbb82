"""Pure translators of the API Interface Specification's shapes (no I/O, no state)."""

from __future__ import annotations

from typing import Any

from llmd.core.fleet import LoadResult
from llmd.core.inference import BatchResult
from llmd.core.models import ModelView
from llmd.core.monitor import Health
from llmd.core.types import ChatMessage, GenerateRequest, GenerationResult, Page, SamplingParams
from llmd.errors import LlmdError
from llmd.http.api_v1.schemas import SpecBatchItem, SpecGenerateFields
from llmd.http.body import validate_value
from llmd.http.format import human_size, page_block

DIALECT = "api_v1"


# -- errors ------------------------------------------------------------------------

def error_object(err: LlmdError) -> dict[str, Any]:
    """The inner ``{"code", "message", "details"}`` object; codes are the core's, UPPER_CASE."""
    details = err.details
    if details is None and err.field:
        details = {"field": err.field}
    if err.code == "model_not_loaded":
        model = details.get("model") if isinstance(details, dict) else None
        hint = f"POST /api/v1/models/{model}/load" if model else "POST /api/v1/models/{model_name}/load"
        details = {**(details if isinstance(details, dict) else {}), "hint": f"load the model first: {hint}"}
    return {"code": err.code.upper(), "message": err.message, "details": details}


def error_body(err: LlmdError) -> dict[str, Any]:
    """The error envelope: ``{"error": {"code", "message", "details"}}``."""
    return {"error": error_object(err)}


# -- generation ----------------------------------------------------------------------

def generate_from_request(body: SpecGenerateFields, endpoint: str) -> GenerateRequest:
    """A generation in core terms: the prompt is the user's turn of a chat."""
    return GenerateRequest(
        messages=(ChatMessage("user", body.prompt),), model=body.model,
        params=SamplingParams(max_tokens=body.max_tokens, temperature=body.temperature),
        dialect=DIALECT, endpoint=endpoint,
    )


def generate_response(result: GenerationResult) -> dict[str, Any]:
    """``{"text", "usage", "latency"}`` (latency in seconds), plus the model and finish reason."""
    return {
        "text": result.text,
        "usage": result.usage.to_dict(),
        "latency": round(result.timings.duration_s, 3),
        "model": result.model,
        "finish_reason": result.finish_reason.value,
    }


def token_event(text: str, finished: bool = False) -> dict[str, Any]:
    """One stream event: ``{"token", "finished"}``."""
    return {"token": text, "finished": finished}


def final_event(last_token: str, result: GenerationResult) -> dict[str, Any]:
    """The last stream event: the last token with ``finished: true``, usage and latency."""
    return {**token_event(last_token, True), "usage": result.usage.to_dict(),
            "latency": round(result.timings.duration_s, 3), "model": result.model,
            "finish_reason": result.finish_reason.value}


def error_event(err: LlmdError, last_token: str = "") -> dict[str, Any]:
    """An error after the stream started: the final event, with the last token generated before it."""
    return {"token": last_token, "error": error_object(err), "finished": True}


# -- batch ---------------------------------------------------------------------------

def batch_requests(items: list[Any]) -> list[GenerateRequest | LlmdError]:
    """Each raw batch item as a request, or the error that names its field (``requests[i].field``)."""
    out: list[GenerateRequest | LlmdError] = []
    for i, raw in enumerate(items):
        try:
            item = validate_value(SpecBatchItem, raw, f"requests[{i}]")
            out.append(generate_from_request(item, "/api/v1/batch/generate"))
        except LlmdError as err:
            out.append(err)
    return out


def batch_response(batch: BatchResult) -> dict[str, Any]:
    """``{"results": [...], "latency"}``: each result, or ``{"error": {...}}`` in its place."""
    return {"results": [{"error": error_object(r)} if isinstance(r, LlmdError) else generate_response(r)
                        for r in batch.items], "latency": round(batch.latency_s, 3)}


# -- models --------------------------------------------------------------------------

def model_item(v: ModelView) -> dict[str, Any]:
    """One entry of ``GET /api/v1/models``.

    ``memory_usage`` of a loaded model is its weights (the GGUF file, mapped
    into memory); a model that is not loaded uses none.
    """
    m = v.model
    return {
        "name": m.name, "format": m.format or "gguf", "size": human_size(m.size_bytes),
        "loaded": v.loaded, "memory_usage": human_size(m.size_bytes if v.loaded else 0),
        "quantization": m.quantization, "state": v.state.value, "aliases": list(m.aliases),
        "architecture": m.architecture, "context_length": m.context_length,
    }


def models_page(page: Page[ModelView]) -> dict[str, Any]:
    """``{"models": [...]}``, plus the LLM Inference Service API's ``items``, ``total``, ``page``, ``size``
    and ``pages``."""
    block = page_block(page, model_item)
    return {"models": block["items"], **block}


def load_response(r: LoadResult) -> dict[str, Any]:
    """The answer of a load: what is loaded, where, and whether the GPU wish was met."""
    d = r.deployment
    out: dict[str, Any] = {
        "status": "loaded", "model": d.model, "loaded": d.running, "quantization": r.quantization,
        "device": d.device, "n_gpu_layers": d.settings.get("n_gpu_layers"), "gpu_available": r.gpu_available,
        "load_seconds": d.load_seconds,
    }
    if r.prefer_gpu and not r.gpu_available:
        out["message"] = "prefer_gpu was asked, but this build of llama.cpp has no GPU offload: loaded on the CPU"
    return out


# -- health --------------------------------------------------------------------------

def health_status(core_status: str) -> str:
    """This API's status: ``healthy``, ``model_not_loaded`` or ``unhealthy``."""
    return {"ok": "healthy", "model_not_loaded": "model_not_loaded"}.get(core_status, "unhealthy")


def health_body(h: Health) -> dict[str, Any]:
    """``{"status", "model_loaded", "memory_usage": "2.1GB/8GB", "active_connections"}`` and a few extras."""
    return {
        "status": health_status(h.status),
        "model_loaded": h.model_loaded,
        "memory_usage": f"{human_size(h.process_rss_bytes)}/{human_size(h.memory_total_bytes)}",
        "active_connections": h.active_streams,
        "default_model": h.default_model,
        "version": h.version,
        "uptime_s": h.uptime_s,
    }
