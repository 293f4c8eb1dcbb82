"""Routes of the API Interface Specification: ``/api/v1/...`` and ``/metrics``.

The error envelope is ``{"error": {"code", "message", "details"}}`` with the
core's codes in UPPER_CASE (``MODEL_NOT_FOUND``, ``MODEL_NOT_LOADED``,
``INVALID_REQUEST``, ``RATE_LIMITED``, ...).
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from quart import Response, jsonify

from llmd.core import Core
from llmd.core.deployment import Generation
from llmd.core.metrics import CONTENT_TYPE
from llmd.errors import LlmdError
from llmd.http.api_v1 import translate as t
from llmd.http.api_v1.schemas import (
    SpecBatchBody,
    SpecBatchEnvelope,
    SpecGenerateBody,
    SpecLoadBody,
    SpecModelsQuery,
    SpecStreamBody,
)
from llmd.http.body import parse_body, parse_query
from llmd.http.routing import Dialect
from llmd.http.sse import sse_json, sse_response

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}}


def render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    """``{"error": {"code", "message", "details"}}`` and the error's status."""
    return t.error_body(err), err.status


async def stream_events(gen: Generation) -> AsyncIterator[str]:
    """The SSE stream: ``{"token", "finished": false}`` ... the last token with ``finished: true``.

    One token is held back so that the last event carries the last token,
    as the document shows, plus ``usage``. Each event is sent as its own
    chunk (the document's JavaScript client parses each ``read()`` as one
    event). An error after the start is one final event
    ``{"token": <last token>, "error": {...}, "finished": true}``.
    """
    pending: str | None = None
    async for event in gen:
        if not event.text:
            continue
        if pending is not None:
            yield sse_json(t.token_event(pending))
        pending = event.text
    result = gen.result
    assert result is not None
    if result.error is not None:
        yield sse_json(t.error_event(result.error, pending or ""))
        return
    yield sse_json(t.final_event(pending or "", result))


def build(core: Core) -> Dialect:
    """The API Interface Specification's service bound to ``core``."""
    d = Dialect("api_v1", "API Interface Specification (/api/v1)", render_error, ERROR_SCHEMA,
                prefixes=("/api/v1/",), paths=("/metrics",))

    @d.route("/api/v1/health", summary="Service health", auth="public")
    async def health() -> Any:
        """``status``: ``healthy`` (default model loaded), ``model_not_loaded`` or ``unhealthy``; always HTTP 200.

        ``memory_usage`` is this process's resident memory over the machine's
        memory; ``active_connections`` counts open SSE streams and WebSockets.
        """
        return jsonify(t.health_body(await core.monitor.health()))

    @d.route("/api/v1/generate", ("POST",), summary="Generate text", body=SpecGenerateBody, sse=True,
             auth="inference")
    async def generate() -> Any:
        """``{"text", "usage", "latency"}``; with ``stream: true``, the SSE stream of ``/generate/stream``."""
        body = await parse_body(SpecGenerateBody)
        gen = await core.inference.generate(t.generate_from_request(body, "/api/v1/generate"))
        if body.stream:
            return sse_response(core.streams, stream_events(gen))
        return jsonify(t.generate_response(await gen.collect_or_raise()))

    @d.route("/api/v1/generate/stream", ("POST",), summary="Generate text as an SSE stream", body=SpecStreamBody,
             sse=True, auth="inference")
    async def generate_stream() -> Any:
        """SSE ``data: {"token": "...", "finished": false}`` events; the last has ``finished: true`` and ``usage``."""
        body = await parse_body(SpecStreamBody)
        gen = await core.inference.generate(t.generate_from_request(body, "/api/v1/generate/stream"))
        return sse_response(core.streams, stream_events(gen))

    @d.route("/api/v1/models", summary="List models", query=SpecModelsQuery, auth="inference")
    async def models() -> Any:
        """``{"models": [{name, format, size, loaded, memory_usage}]}``, plus the paging fields ``items``,
        ``total``, ``page``, ``size`` and ``pages``."""
        q = parse_query(SpecModelsQuery)
        return jsonify(t.models_page(await core.models.page(q.page, q.size)))

    @d.route("/api/v1/models/<path:model_name>/load", ("POST",), summary="Load a model", body=SpecLoadBody,
             auth="admin")
    async def load(model_name: str) -> Any:
        """Load a model (waits for the load); ``{}`` loads it with the configured settings.

        ``quantization`` picks the model of the same family with that
        quantization; ``prefer_gpu`` offloads every layer when the build has a
        GPU backend (the answer says so when it has none).
        """
        body = await parse_body(SpecLoadBody)
        loaded = await core.fleet.load(model_name, quantization=body.quantization, prefer_gpu=body.prefer_gpu)
        return jsonify(t.load_response(loaded))

    @d.route("/api/v1/batch/generate", ("POST",), summary="Generate for several prompts", body=SpecBatchBody,
             auth="inference")
    async def batch_generate() -> Any:
        """``{"results": [...]}`` in request order; a bad item is an ``{"error": {...}}`` entry in its place.

        The items run concurrently, so the engine schedules them together.
        More than ``server.max_batch_size`` items is a 400.
        """
        envelope = await parse_body(SpecBatchEnvelope)
        return jsonify(t.batch_response(await core.inference.generate_batch(t.batch_requests(envelope.requests))))

    async def metrics() -> Any:
        """Prometheus text: ``model_inference_seconds``, ``active_connections`` and ``llmd_*`` metrics."""
        return Response(core.monitor.metrics_text(), content_type=CONTENT_TYPE)

    d.route("/metrics", summary="Prometheus metrics", text=True, auth="public")(metrics)

    async def metrics_v1() -> Any:
        """The same Prometheus text as ``/metrics``."""
        return await metrics()

    d.route("/api/v1/metrics", summary="Prometheus metrics", text=True, auth="public")(metrics_v1)
    return d
