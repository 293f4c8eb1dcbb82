"""Pure translators of seed 001's shapes (no I/O, no state)."""

from __future__ import annotations

import math
from typing import Any

import pydantic

from llmd import __version__
from llmd.core.types import ChatMessage, GenerateRequest, GenerationResult, SamplingParams
from llmd.errors import LlmdError, ValidationError
from llmd.http.api import validation_error
from llmd.http.spec.schemas import SpecBatchItem, SpecGenerateFields

DIALECT = "spec"



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
    """Seed 001's error envelope: ``{"error": {"code", "message", "details"}}``."""
    return {"error": error_object(err)}


# -- generation ----------------------------------------------------------------------

def generate_from_request(body: SpecGenerateFields, endpoint: str) -> GenerateRequest:
    """A seed-001 generation in core terms: the prompt is the user's turn of a chat."""
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

def batch_item(raw: Any, index: int) -> SpecBatchItem:
    """Validate one batch item; a :class:`ValidationError` names ``requests[i].field``."""
    if not isinstance(raw, dict):
        raise ValidationError(f"requests[{index}]: must be a JSON object", field=f"requests[{index}]")
    try:
        return SpecBatchItem.model_validate(raw, strict=True)
    except pydantic.ValidationError as exc:
        err = validation_error(exc)
        field = f"requests[{index}].{err.field}"
        reason = err.message.split(": ", 1)[-1]
        raise ValidationError(f"{field}: {reason}", field=field, details=err.details) from None


def batch_limit_error(count: int, limit: int) -> ValidationError:
    """A batch larger than ``server.max_batch_size``."""
    return ValidationError(
        f"requests: a batch holds at most {limit} requests, got {count}",
        field="requests", details={"max_batch_size": limit, "received": count})


# -- models --------------------------------------------------------------------------

def human_size(n: int | float | None) -> str:
    """``103178240`` -> ``"98.4MB"``; binary units, one decimal, no trailing ``.0``."""
    value = float(n or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            text = f"{value:.1f}".rstrip("0").rstrip(".") if unit != "B" else str(int(value))
            return f"{text}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def model_item(m: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``GET /api/v1/models``.

    ``memory_usage`` of a loaded model is its weights (the GGUF file, mapped
    into memory); a model that is not loaded uses none.
    """
    return {
        "name": m["name"], "format": m.get("format") or "gguf", "size": human_size(m.get("size_bytes")),
        "loaded": bool(m.get("loaded")), "memory_usage": human_size(m.get("size_bytes") if m.get("loaded") else 0),
        "quantization": m.get("quantization"), "state": m.get("state"), "aliases": m.get("aliases", []),
        "architecture": m.get("architecture"), "context_length": m.get("context_length"),
    }


def models_page(models: list[dict[str, Any]], page: int, size: int) -> dict[str, Any]:
    """Seed 001's ``{"models": [...]}`` plus seed 002's ``items``, ``total``, ``page``, ``size``, ``pages``."""
    items = [model_item(m) for m in models]
    chunk = items[(page - 1) * size: page * size]
    return {"models": chunk, "items": chunk, "total": len(items), "page": page, "size": size,
            "pages": math.ceil(len(items) / size)}


def load_response(dep_stats: dict[str, Any], quantization: str | None, prefer_gpu: bool | None,
                  gpu_available: bool) -> dict[str, Any]:
    """The answer of a load: what is loaded, where, and whether the GPU wish was met."""
    settings = dep_stats.get("settings") or {}
    out: dict[str, Any] = {
        "status": "loaded", "model": dep_stats["model"], "loaded": dep_stats["state"] == "running",
        "quantization": quantization, "device": dep_stats.get("device"),
        "n_gpu_layers": settings.get("n_gpu_layers"), "gpu_available": gpu_available,
        "load_seconds": dep_stats.get("load_seconds"),
    }
    if prefer_gpu and not gpu_available:
        out["message"] = "prefer_gpu was asked, but this build of llama.cpp has no GPU offload: loaded on the CPU"
    return out


# -- health --------------------------------------------------------------------------

def health_status(core_status: str) -> str:
    """Seed 001's status: ``healthy``, ``model_not_loaded`` or ``unhealthy``."""
    return {"ok": "healthy", "model_not_loaded": "model_not_loaded"}.get(core_status, "unhealthy")


def health_body(health: dict[str, Any], rss_bytes: int, total_bytes: int) -> dict[str, Any]:
    """``{"status", "model_loaded", "memory_usage": "2.1GB/8GB", "active_connections"}`` and a few extras."""
    return {
        "status": health_status(health["status"]),
        "model_loaded": health["model_loaded"],
        "memory_usage": f"{human_size(rss_bytes)}/{human_size(total_bytes)}",
        "active_connections": health.get("active_streams", 0),
        "default_model": health.get("default_model"),
        "version": __version__,
        "uptime_s": health.get("uptime_s"),
    }
