"""Routes of the OpenAI API. Each handler parses, calls one core method, renders."""

from __future__ import annotations

from typing import Any

from quart import jsonify

from llmd.core import Core
from llmd.errors import LlmdError
from llmd.http import openai_format as t
from llmd.http.body import parse_body
from llmd.http.openai import responses_routes
from llmd.http.openai_schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from llmd.http.routing import Dialect

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}


def render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    """OpenAI's error envelope and the error's status."""
    return t.error_body(err), err.status


def build(core: Core) -> Dialect:
    """The OpenAI API bound to ``core``."""
    d = Dialect("openai", "OpenAI API", render_error, ERROR_SCHEMA, prefixes=("/v1/",))

    @d.route("/v1/models", summary="List models", auth="inference")
    async def list_models() -> Any:
        """All registered models, OpenAI-shaped."""
        views = await core.models.list()
        return jsonify({"object": "list", "data": [t.model_object(v.model, v.state.value) for v in views]})

    @d.route("/v1/models/<path:model_id>", summary="Retrieve a model", auth="inference")
    async def get_model(model_id: str) -> Any:
        """One model by name or alias."""
        view = await core.models.view(model_id)
        return jsonify(t.model_object(view.model, view.state.value))

    @d.route("/v1/chat/completions", ("POST",), summary="Create a chat completion",
             body=ChatCompletionRequest, sse=True, auth="inference")
    async def chat_completions() -> Any:
        """Chat through the model's own chat template; ``stream`` gives SSE chunks then ``[DONE]``."""
        body = await parse_body(ChatCompletionRequest)
        gen = await core.inference.generate(t.chat_from_request(body))
        cid = t.new_id("chatcmpl")
        if not body.stream:
            return jsonify(t.chat_response(await gen.collect_or_raise(), cid, gen.model, choices=gen.results,
                                           logprobs=bool(body.logprobs)))
        return t.openai_stream(core.streams, gen, cid=cid, model=gen.model, chat=True, usage=t.usage_mode(body))

    @d.route("/v1/completions", ("POST",), summary="Create a completion", body=CompletionRequest, sse=True,
             auth="inference")
    async def completions() -> Any:
        """Raw-prompt completion, no chat template; ``stream`` gives SSE then ``[DONE]``."""
        body = await parse_body(CompletionRequest)
        gen = await core.inference.generate(t.completion_from_request(body))
        cid = t.new_id("cmpl")
        if not body.stream:
            return jsonify(t.completion_response(await gen.collect_or_raise(), cid, gen.model, choices=gen.results,
                                                 logprobs=body.logprobs is not None))
        return t.openai_stream(core.streams, gen, cid=cid, model=gen.model, chat=False, usage=t.usage_mode(body))

    @d.route("/v1/embeddings", ("POST",), summary="Create embeddings", body=EmbeddingRequest, auth="inference")
    async def embeddings() -> Any:
        """Mean-pooled, normalised embeddings of one string or a list of strings."""
        body = await parse_body(EmbeddingRequest)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        result = await core.inference.embed(body.model, inputs, dimensions=body.dimensions)
        return jsonify(t.embeddings_response(result, body.encoding_format))

    responses_routes.register(d, core)  # /v1/responses: llmd/http/openai/responses_routes.py
    return d

