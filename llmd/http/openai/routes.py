"""Routes of the OpenAI dialect. Handlers parse, call one core method, render."""

from __future__ import annotations

import time
from typing import Any, Callable

from quart import jsonify

from llmd.core import Core
from llmd.errors import LlmdError, ModelNotFoundError
from llmd.http.api import Dialect, parse_body
from llmd.http.openai import translate as t
from llmd.http.openai.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from llmd.http.streaming import render_stream, sse, sse_json, sse_response


def _render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    return t.error_body(err), err.status


def openai_stream(core: Core, gen: Any, body: Any, cid: str, model: str, obj: str, *,
                  piece: Callable[[int, str, str | None], dict], first: Callable[[int], dict] | None = None) -> Any:
    """OpenAI chunks over SSE, shared by chat completions and completions here and in seed 004's
    deployment routes.

    ``piece(created, text, finish_reason)`` builds one chunk; ``first`` an
    optional opening chunk. Ends with the finish chunk, the usage chunk when
    ``stream_options.include_usage`` asks for it, and ``[DONE]``.
    """
    created = int(time.time())
    usage = bool(body.stream_options and body.stream_options.include_usage)

    def end(result: Any) -> list[str]:
        out = [sse_json(piece(created, "", t.finish_reason(result)))]
        if usage:
            out.append(sse_json(t.usage_chunk(cid, created, model, obj, result)))
        return out + [sse("[DONE]")]

    return sse_response(core, render_stream(
        gen,
        start=(lambda: sse_json(first(created))) if first else None,
        token=lambda text: sse_json(piece(created, text, None)),
        end=end,
        error=lambda err: [sse_json(t.error_body(err)), sse("[DONE]")],
    ))


def build(core: Core) -> Dialect:
    """The OpenAI dialect bound to ``core``."""
    d = Dialect("openai", "OpenAI API", _render_error, prefixes=("/v1/",))

    @d.route("/v1/models", summary="List models", auth="inference")
    async def list_models() -> Any:
        """All registered models, OpenAI-shaped."""
        return jsonify({"object": "list", "data": [t.model_object(m) for m in await core.list_models()]})

    @d.route("/v1/models/<path:model_id>", summary="Retrieve a model", auth="inference")
    async def get_model(model_id: str) -> Any:
        """One model by name or alias."""
        for m in await core.list_models():
            if model_id == m["name"] or model_id in m["aliases"]:
                return jsonify(t.model_object(m))
        raise ModelNotFoundError(f"model '{model_id}' does not exist", field="model")

    @d.route("/v1/chat/completions", ("POST",), summary="Create a chat completion",
             body=ChatCompletionRequest, sse=True, auth="inference")
    async def chat_completions() -> Any:
        """Chat through the model's own chat template; ``stream`` gives SSE chunks then ``[DONE]``."""
        body = await parse_body(ChatCompletionRequest)
        gen = await core.generate(t.chat_from_request(body))
        cid, model = t.new_id("chatcmpl"), gen.deployment.model.name
        if not body.stream:
            return jsonify(t.chat_response(await gen.collect_or_raise(), cid, model))
        return openai_stream(core, gen, body, cid, model, "chat.completion.chunk",
                       piece=lambda created, text, finish: t.chat_chunk(
                           cid, created, model, {} if finish else {"content": text}, finish),
                       first=lambda created: t.chat_chunk(cid, created, model, {"role": "assistant", "content": ""}))

    @d.route("/v1/completions", ("POST",), summary="Create a completion", body=CompletionRequest, sse=True,
             auth="inference")
    async def completions() -> Any:
        """Raw-prompt completion, no chat template; ``stream`` gives SSE then ``[DONE]``."""
        body = await parse_body(CompletionRequest)
        gen = await core.generate(t.completion_from_request(body))
        cid, model = t.new_id("cmpl"), gen.deployment.model.name
        if not body.stream:
            return jsonify(t.completion_response(await gen.collect_or_raise(), cid, model))
        return openai_stream(core, gen, body, cid, model, "text_completion",
                       piece=lambda created, text, finish: t.completion_chunk(cid, created, model, text, finish))

    @d.route("/v1/embeddings", ("POST",), summary="Create embeddings", body=EmbeddingRequest, auth="inference")
    async def embeddings() -> Any:
        """Mean-pooled, normalised embeddings of one string or a list of strings."""
        body = await parse_body(EmbeddingRequest)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        result = await core.embed(body.model, inputs)
        return jsonify(t.embeddings_response(result, body.encoding_format, body.dimensions))

    return d
