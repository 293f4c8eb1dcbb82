"""Routes of the Anthropic Messages API. Each handler parses, calls one core method, renders."""

from __future__ import annotations

from typing import Any

from quart import jsonify

from llmd.core import Core
from llmd.errors import LlmdError
from llmd.http.anthropic import translate as t
from llmd.http.anthropic.schemas import CountTokensRequest, MessagesRequest
from llmd.http.routing import Dialect

ERROR_SCHEMA = {"type": "object", "required": ["type", "error"], "properties": {
    "type": {"const": "error"},
    "error": {"type": "object", "required": ["type", "message"],
              "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}


def render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    """Anthropic's error envelope and the error's status."""
    return t.error_body(err), err.status


def build(core: Core) -> Dialect:
    """The Anthropic Messages API bound to ``core``.

    It owns ``/v1/messages`` and every path below it inside the OpenAI API's
    ``/v1/``: a wrong method or an unknown path there is answered in
    Anthropic's envelope.
    """
    d = Dialect("anthropic", "Anthropic Messages API", render_error, ERROR_SCHEMA,
                paths=("/v1/messages",), prefixes=("/v1/messages/",))

    @d.route("/v1/messages", ("POST",), summary="Create a message", body=MessagesRequest, sse=True,
             auth="inference")
    async def create_message() -> Any:
        """A chat turn through the model's chat template, with tools; ``stream`` gives Anthropic's events."""
        body = await t.parse(MessagesRequest)
        gen = await core.inference.generate(t.generate_request(body))
        mid = t.new_id("msg")
        if not body.stream:
            return jsonify(t.message_response(await gen.collect_or_raise(), mid, gen.model))
        return t.message_stream(core.streams, gen, mid=mid, model=gen.model)

    @d.route("/v1/messages/count_tokens", ("POST",), summary="Count the tokens of a message",
             body=CountTokensRequest, auth="inference")
    async def count_tokens() -> Any:
        """The tokens the messages, system prompt and tools take in the model's prompt."""
        body = await t.parse(CountTokensRequest)
        return jsonify({"input_tokens": await core.inference.count_tokens(t.count_request(body))})

    return d
