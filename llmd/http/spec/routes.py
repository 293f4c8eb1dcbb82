"""Routes of seed 001 (API-spec service): ``/api/v1/...`` and ``/metrics``.

Handlers parse, call the core, render. The error envelope is
``{"error": {"code", "message", "details"}}`` with the core's codes in
UPPER_CASE (``MODEL_NOT_FOUND``, ``MODEL_NOT_LOADED``, ``INVALID_REQUEST``,
``RATE_LIMITED``, ...).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator

import psutil
from quart import Response, jsonify

from llmd.core import Core
from llmd.core.deployments import Generation
from llmd.core.metrics import CONTENT_TYPE, live_state
from llmd.errors import LlmdError
from llmd.http.api import Dialect, parse_body, parse_query
from llmd.http.spec import translate as t
from llmd.http.spec.schemas import SpecBatchBody, SpecBatchEnvelope, SpecGenerateBody, SpecLoadBody, SpecModelsQuery, SpecStreamBody
from llmd.http.streaming import sse_json, sse_response

log = logging.getLogger(__name__)


def _render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    return t.error_body(err), err.status


def gpu_offload_available(engine: Any) -> bool:
    """Whether ``engine`` can offload layers to a GPU (blocking: imports llama.cpp; run it in a thread).

    An engine may answer itself with ``supports_gpu_offload()``; otherwise
    llama-cpp-python's build is asked.
    """
    probe = getattr(engine, "supports_gpu_offload", None)
    if callable(probe):
        return bool(probe())
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # noqa: BLE001 - no llama.cpp, no GPU
        return False


async def stream_events(gen: Generation) -> AsyncIterator[str]:
    """Seed 001's SSE stream: ``{"token", "finished": false}`` ... the last token with ``finished: true``.

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
    """The seed-001 dialect bound to ``core``."""
    d = Dialect("spec", "API-spec service (seed 001)", _render_error, prefixes=("/api/v1/",),
                paths=("/metrics",))

    @d.route("/api/v1/health", summary="Service health", auth="public")
    async def health() -> Any:
        """``status``: ``healthy`` (default model loaded), ``model_not_loaded`` or ``unhealthy``; always HTTP 200.

        ``memory_usage`` is this process's resident memory over the machine's
        memory; ``active_connections`` counts open SSE streams and WebSockets.
        """
        h = await core.health()
        rss, total = psutil.Process().memory_info().rss, psutil.virtual_memory().total
        return jsonify(t.health_body(h, rss, total))

    @d.route("/api/v1/generate", ("POST",), summary="Generate text", body=SpecGenerateBody, sse=True,
             auth="inference")
    async def generate() -> Any:
        """``{"text", "usage", "latency"}``; with ``stream: true``, the SSE stream of ``/generate/stream``."""
        body = await parse_body(SpecGenerateBody)
        gen = await core.generate(t.generate_from_request(body, "/api/v1/generate"))
        if body.stream:
            return sse_response(core, stream_events(gen))
        return jsonify(t.generate_response(await gen.collect_or_raise()))

    @d.route("/api/v1/generate/stream", ("POST",), summary="Generate text as an SSE stream", body=SpecStreamBody,
             sse=True, auth="inference")
    async def generate_stream() -> Any:
        """SSE ``data: {"token": "...", "finished": false}`` events; the last has ``finished: true`` and ``usage``."""
        body = await parse_body(SpecStreamBody)
        gen = await core.generate(t.generate_from_request(body, "/api/v1/generate/stream"))
        return sse_response(core, stream_events(gen))

    @d.route("/api/v1/models", summary="List models", query=SpecModelsQuery, auth="inference")
    async def models() -> Any:
        """``{"models": [{name, format, size, loaded, memory_usage}]}`` plus ``items``, ``total``, ``page``, ``size``, ``pages``."""
        q = parse_query(SpecModelsQuery)
        return jsonify(t.models_page(await core.list_models(), q.page, q.size))

    @d.route("/api/v1/models/<path:model_name>/load", ("POST",), summary="Load a model", body=SpecLoadBody,
             auth="admin")
    async def load(model_name: str) -> Any:
        """Load a model (waits for the load); ``{}`` loads it with the configured settings.

        ``quantization`` picks the model of the same family with that
        quantization; ``prefer_gpu`` offloads every layer when the build has a
        GPU backend (the answer says so when it has none).
        """
        body = await parse_body(SpecLoadBody)
        model = await core.registry.with_quantization(model_name, body.quantization)
        gpu = await asyncio.to_thread(gpu_offload_available, core.engine)
        layers = None
        if body.prefer_gpu is False:
            layers = 0
        elif body.prefer_gpu and gpu:
            layers = -1
        dep = await core.load_model(model.name, n_gpu_layers=layers)
        return jsonify(t.load_response(dep.stats(), dep.model.quantization, body.prefer_gpu, gpu))

    @d.route("/api/v1/batch/generate", ("POST",), summary="Generate for several prompts", body=SpecBatchBody,
             auth="inference")
    async def batch_generate() -> Any:
        """``{"results": [...]}`` in request order; a bad item is an ``{"error": {...}}`` entry in its place.

        The items run concurrently, so the engine schedules them together.
        More than ``server.max_batch_size`` items is a 400.
        """
        envelope = await parse_body(SpecBatchEnvelope)
        limit = core.config.server.max_batch_size
        if len(envelope.requests) > limit:
            raise t.batch_limit_error(len(envelope.requests), limit)
        started = time.monotonic()

        async def one(i: int, raw: Any) -> dict[str, Any]:
            try:
                item = t.batch_item(raw, i)
                gen = await core.generate(t.generate_from_request(item, "/api/v1/batch/generate"))
                return t.generate_response(await gen.collect_or_raise())
            except LlmdError as err:
                return {"error": t.error_object(err)}

        tasks = [asyncio.ensure_future(one(i, raw)) for i, raw in enumerate(envelope.requests)]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # an unexpected failure (or a client that left) ends the others too
                task.cancel()
            raise
        return jsonify({"results": results, "latency": round(time.monotonic() - started, 3)})

    async def metrics() -> Any:
        """Prometheus text: ``model_inference_seconds``, ``active_connections`` and ``llmd_*`` metrics."""
        return Response(core.metrics.render(live_state(core)), content_type=CONTENT_TYPE)

    d.route("/metrics", summary="Prometheus metrics", text=True, auth="public")(metrics)

    async def metrics_v1() -> Any:
        """The same Prometheus text as ``/metrics``."""
        return await metrics()

    d.route("/api/v1/metrics", summary="Prometheus metrics", text=True, auth="public")(metrics_v1)
    return d
