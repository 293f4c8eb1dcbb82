"""Routes of seed 003 (LLaMA Local)."""

from __future__ import annotations

from typing import Any

from quart import jsonify

from llmd.core import Core
from llmd.errors import LlmdError
from llmd.http.api import Dialect, parse_body
from llmd.http.local import translate as t
from llmd.http.local.schemas import GenerateBody
from llmd.http.streaming import render_stream, sse, sse_response


def _render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    return t.error_body(err), err.status


def build(core: Core) -> Dialect:
    """The seed-003 dialect bound to ``core``."""
    d = Dialect("local", "LLaMA Local (seed 003)", _render_error,
                paths=("/generate", "/health", "/model-info"))

    @d.route("/generate", ("POST",), summary="Generate text", body=GenerateBody, sse=True, auth="inference")
    async def generate() -> Any:
        """Streams raw text as SSE by default (``data: <text>`` ... ``data: [DONE]``); ``stream: false`` answers ``{text, prompt}``."""
        body = await parse_body(GenerateBody)
        gen = await core.generate(t.generate_from_request(body))
        if not body.stream:
            result = await gen.collect_or_raise()
            return jsonify({"text": result.text, "prompt": body.prompt})
        return sse_response(core, render_stream(
            gen,
            token=sse,
            end=lambda result: sse("[DONE]"),
            error=lambda err: sse(t.error_event(err)),
        ))

    @d.route("/health", summary="Service health", auth="public")
    async def health() -> Any:
        """``status`` is ``ok``, ``model_not_loaded`` or ``error``; always HTTP 200."""
        return jsonify(t.health_body(await core.health()))

    @d.route("/model-info", summary="The loaded model", auth="inference")
    async def model_info() -> Any:
        """Path, context and default sampling of the default model; 503 until it is loaded."""
        dep = await core.deployment_for(None)
        loaded = dep.require_running()
        s = core.config.sampling
        return jsonify({
            "path": dep.model.path, "loaded": True, "n_ctx": loaded.n_ctx,
            "n_gpu_layers": loaded.n_gpu_layers, "temperature": s.temperature, "top_p": s.top_p,
            "top_k": s.top_k, "repeat_penalty": s.repeat_penalty, "max_tokens": s.max_tokens,
            "stream": True, "model": dep.model.name, "architecture": dep.model.architecture,
            "quantization": dep.model.quantization, "device": loaded.device,
        })

    return d
