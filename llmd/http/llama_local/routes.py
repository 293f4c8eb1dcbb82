"""Routes of the LLaMA Local API."""

from __future__ import annotations

from typing import Any

from quart import jsonify

from llmd.core import Core
from llmd.errors import LlmdError
from llmd.http.body import parse_body
from llmd.http.llama_local import translate as t
from llmd.http.llama_local.schemas import GenerateBody
from llmd.http.routing import Dialect
from llmd.http.sse import render_stream, sse, sse_response

ERROR_SCHEMA = {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}


def render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    """``{"detail": "..."}`` and the error's status."""
    return t.error_body(err), err.status


def build(core: Core) -> Dialect:
    """The LLaMA Local API bound to ``core``."""
    d = Dialect("llama_local", "LLaMA Local API", render_error, ERROR_SCHEMA,
                paths=("/generate", "/health", "/model-info"))

    @d.route("/generate", ("POST",), summary="Generate text", body=GenerateBody, sse=True, auth="inference")
    async def generate() -> Any:
        """Streams raw text as SSE by default (``data: <text>`` ... ``data: [DONE]``); ``stream: false``
        answers ``{text, prompt}``."""
        body = await parse_body(GenerateBody)
        gen = await core.inference.generate(t.generate_from_request(body))
        if not body.stream:
            result = await gen.collect_or_raise()
            return jsonify({"text": result.text, "prompt": body.prompt})
        return sse_response(core.streams, render_stream(
            gen,
            token=sse,
            end=lambda result: sse("[DONE]"),
            error=lambda err: sse(t.error_event(err)),
        ))

    @d.route("/health", summary="Service health", auth="public")
    async def health() -> Any:
        """``status`` is ``ok``, ``model_not_loaded`` or ``error``; always HTTP 200."""
        return jsonify(t.health_body(await core.monitor.health()))

    @d.route("/model-info", summary="The loaded model", auth="inference")
    async def model_info() -> Any:
        """Path, context and default sampling of the default model; 503 until it is loaded."""
        return jsonify(t.model_info(await core.fleet.runtime()))

    return d
