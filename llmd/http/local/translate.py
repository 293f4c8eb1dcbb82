"""Pure translators of seed 003's shapes."""

from __future__ import annotations

from typing import Any

from llmd import __version__
from llmd.core.types import ChatMessage, GenerateRequest, SamplingParams
from llmd.errors import LlmdError
from llmd.http.local.schemas import GenerateBody


def generate_from_request(body: GenerateBody) -> GenerateRequest:
    """``/generate`` in core terms: by default the prompt is one user turn."""
    params = SamplingParams(max_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
                            top_k=body.top_k, repeat_penalty=body.repeat_penalty)
    if body.raw:
        return GenerateRequest(prompt=body.prompt, model=body.model, params=params,
                               dialect="local", endpoint="/generate")
    return GenerateRequest(messages=(ChatMessage("user", body.prompt),), model=body.model, params=params,
                           dialect="local", endpoint="/generate")


def health_body(health: dict[str, Any]) -> dict[str, Any]:
    """The shared ``/health`` body (API-MAP.md): seed 003's status wins, seed 004's fields join."""
    details = {k: v for k, v in health.items() if k not in ("status", "model_loaded")}
    return {"status": health["status"], "model_loaded": health["model_loaded"],
            "service": "llmd", "version": __version__, "details": details}


def error_body(err: LlmdError) -> dict[str, Any]:
    """Seed 003's error envelope."""
    return {"detail": err.message}


def error_event(err: LlmdError) -> str:
    """The in-stream error marker of seed 003."""
    return f"[ERROR {err.code}: {err.message}]"
