"""Routes of the OpenAI Responses API (docs/api-responses.md). Each handler parses, calls one core method,
renders.

The stored responses' routes spell ``resp_`` out in their paths (as OpenAI's
ids begin), so that ``/v1/responses/input_tokens`` can never be read as an
id: a GET or DELETE there is a 405, not a lookup.
"""

from __future__ import annotations

from typing import Any

from quart import jsonify

from llmd.core import Core
from llmd.errors import ValidationError
from llmd.http.body import parse_body, parse_query
from llmd.http.openai import responses_format as f
from llmd.http.openai.responses_schemas import (
    InputItemsQuery,
    InputTokensRequest,
    ResponseCreateRequest,
    RetrieveQuery,
)
from llmd.http.routing import Dialect

PREFIX = "resp_"


def register(d: Dialect, core: Core) -> None:
    """Declare the Responses API's routes on the OpenAI API's dialect."""

    @d.route("/v1/responses", ("POST",), summary="Create a model response", body=ResponseCreateRequest, sse=True,
             auth="inference")
    async def create_response() -> Any:
        """Answer input items (and, with ``previous_response_id``, a stored conversation); ``stream`` gives
        OpenAI's typed events. Stored unless ``store`` is false."""
        body = await parse_body(ResponseCreateRequest)
        spec = f.spec_from_request(body)
        with f.our_fields():  # the core's errors only: the request's own name this API's fields already
            run = await core.responses.create(spec)
        if not body.stream:
            return jsonify(f.response_object(await run.collect_or_raise()))
        return f.response_stream(core.streams, run)

    @d.route("/v1/responses/input_tokens", ("POST",), summary="Count a response's input tokens",
             body=InputTokensRequest, auth="inference")
    async def input_tokens() -> Any:
        """The tokens the input would take on the model: instructions, earlier turns, tools, chat template."""
        body = await parse_body(InputTokensRequest)
        spec = f.spec_for_count(body)
        with f.our_fields():
            count = await core.responses.input_tokens(spec)
        return jsonify(f.input_tokens_object(count))

    @d.route(f"/v1/responses/{PREFIX}<response_key>", summary="Retrieve a stored response", query=RetrieveQuery,
             auth="inference")
    async def get_response(response_key: str) -> Any:
        """A stored response, as it ended."""
        query = parse_query(RetrieveQuery)
        if query.stream:
            raise ValidationError("stream: replaying a response's events is not supported", field="stream")
        return jsonify(f.response_object(await core.responses.get(PREFIX + response_key)))

    @d.route(f"/v1/responses/{PREFIX}<response_key>", ("DELETE",), summary="Delete a stored response",
             auth="inference")
    async def delete_response(response_key: str) -> Any:
        """Forget a stored response; responses that continued it keep their own copy of the conversation."""
        return jsonify(f.deleted_object(await core.responses.delete(PREFIX + response_key)))

    @d.route(f"/v1/responses/{PREFIX}<response_key>/input_items", summary="List a response's input items",
             query=InputItemsQuery, auth="inference")
    async def list_input_items(response_key: str) -> Any:
        """The items the model saw for a stored response (earlier turns' included), newest first by default."""
        query = parse_query(InputItemsQuery)
        page = await core.responses.input_items(PREFIX + response_key, limit=query.limit, order=query.order,
                                                after=query.after, before=query.before)
        return jsonify(f.items_page(page))
