"""Routes of the Ollama API. Each handler parses, calls one core method, renders.

Point any Ollama client (the ``ollama`` Python and JavaScript libraries, Open
WebUI, Continue) at llmd's address. The routes are exact paths under
``/api/``: ``/api/chat/{deployment_id}`` and ``/api/health`` stay the LLM
Manager API's, ``/api/models...`` the others'.
"""

from __future__ import annotations

import time
from typing import Any

from quart import Response, jsonify, request

import llmd
from llmd.core import Core
from llmd.errors import LlmdError, NotFoundError, ValidationError
from llmd.http.body import parse_body
from llmd.http.ollama import schemas as s
from llmd.http.ollama import translate as t
from llmd.http.routing import Dialect

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
RUNNING = "Ollama is running"


def render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    """Ollama's error envelope and the error's status."""
    return t.error_body(err), err.status


def _empty(status: int = 200) -> Response:
    return Response("", status=status)


def build(core: Core) -> Dialect:
    """The Ollama API bound to ``core``."""
    d = Dialect("ollama", "Ollama API", render_error, ERROR_SCHEMA,
                paths=("/", "/api/version", "/api/tags", "/api/ps", "/api/show", "/api/chat", "/api/generate",
                       "/api/embed", "/api/embeddings", "/api/pull", "/api/delete", "/api/copy", "/api/create",
                       "/api/push", "/api/blobs"),
                patterns=(r"/api/blobs/.*",), upload_prefixes=("/api/blobs/",))

    @d.route("/", ("GET", "HEAD"), summary="Ollama is running", text=True, auth="public")
    async def root() -> Any:
        """``Ollama is running`` for clients that probe the server. A browser (Accept: text/html) never gets
        it: the app sends it to the web console first where there is one, else it is a 404 here."""
        if "text/html" in request.headers.get("Accept", ""):
            raise NotFoundError(f"no route for {request.method} /")
        return Response(RUNNING, status=200, content_type="text/plain; charset=utf-8")

    @d.route("/api/version", summary="The Ollama API version", auth="public")
    async def version() -> Any:
        """``{"version"}``: the Ollama API generation llmd follows (and llmd's own version)."""
        return jsonify({"version": t.OLLAMA_VERSION, "llmd": llmd.__version__})

    @d.route("/api/tags", summary="List models", auth="inference")
    async def tags() -> Any:
        """Every registered model, and every alias (a copy), as Ollama lists local models."""
        return jsonify(t.tags(await core.models.list()))

    @d.route("/api/ps", summary="List loaded models", auth="inference")
    async def ps() -> Any:
        """The models loaded now, their memory and when each is unloaded if idle."""
        return jsonify(t.running(await core.models.running()))

    @d.route("/api/show", ("POST",), summary="Show a model", body=s.ModelRequest, auth="inference")
    async def show() -> Any:
        """Details, parameters, template, the GGUF header (``model_info``) and capabilities."""
        body = await parse_body(s.ModelRequest)
        return jsonify(t.show(await core.models.show(t.model_ref(body)), body.verbose))

    async def load_or_unload(model: str, keep: float | None, *, chat: bool) -> Any:
        """A chat or generate with nothing to answer: load the model, or with ``keep_alive`` 0 unload it."""
        if keep == 0:
            await core.fleet.unload(model)
            return jsonify(t.loaded(model, "unload", chat=chat))
        await core.fleet.preload(model, keep)
        return jsonify(t.loaded(model, "load", chat=chat))

    @d.route("/api/chat", ("POST",), summary="Chat", body=s.ChatRequest, auth="inference")
    async def chat() -> Any:
        """A chat turn (with tools); NDJSON unless ``stream`` is false. No messages: load (or, with
        ``keep_alive`` 0, unload) the model."""
        body = await parse_body(s.ChatRequest)
        keep = t.keep_alive_seconds(body.keep_alive)
        if not body.messages:
            t.sampling(body.options, body.format)  # bad options are a 400 here too
            return await load_or_unload(body.model, keep, chat=True)
        gen = await core.inference.generate(t.chat_request(body, keep))
        if body.stream is False:
            return jsonify(t.chat_response(await gen.collect_or_raise(), body.model, gen.load_s))
        return t.generation_stream(core.streams, gen, model=body.model, chat=True)

    @d.route("/api/generate", ("POST",), summary="Generate", body=s.GenerateRequest, auth="inference")
    async def generate() -> Any:
        """A completion of ``prompt`` (through the chat template unless ``raw``); NDJSON unless ``stream`` is
        false. No prompt: load (or, with ``keep_alive`` 0, unload) the model."""
        body = await parse_body(s.GenerateRequest)
        keep = t.keep_alive_seconds(body.keep_alive)
        if not body.prompt:
            t.sampling(body.options, body.format)
            return await load_or_unload(body.model, keep, chat=False)
        gen = await core.inference.generate(t.generate_request(body, keep))
        if body.stream is False:
            return jsonify(t.generate_response(await gen.collect_or_raise(), body.model, gen.load_s))
        return t.generation_stream(core.streams, gen, model=body.model, chat=False)

    @d.route("/api/embed", ("POST",), summary="Embeddings", body=s.EmbedRequest, auth="inference")
    async def embed() -> Any:
        """Mean-pooled, L2-normalised embeddings of ``input`` (a string or a list)."""
        body = await parse_body(s.EmbedRequest)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        started = time.monotonic()
        result = await core.inference.embed(body.model, inputs, dimensions=body.dimensions,
                                            keep_alive_s=t.keep_alive_seconds(body.keep_alive))
        return jsonify(t.embed_response(result, body.model, time.monotonic() - started))

    @d.route("/api/embeddings", ("POST",), summary="Embedding of one prompt (older)", body=s.EmbeddingsRequest,
             auth="inference")
    async def embeddings() -> Any:
        """``{"embedding": [...]}`` of ``prompt``; an empty prompt has an empty embedding, as in Ollama."""
        body = await parse_body(s.EmbeddingsRequest)
        keep = t.keep_alive_seconds(body.keep_alive)
        if not body.prompt:
            await core.models.get(body.model)  # an unknown model is still a 404
            return jsonify({"embedding": []})
        result = await core.inference.embed(body.model, [body.prompt], keep_alive_s=keep)
        return jsonify({"embedding": result.vectors[0]})

    @d.route("/api/pull", ("POST",), summary="Pull a model", body=s.PullRequest, auth="admin")
    async def pull() -> Any:
        """Download from the Ollama registry (``name[:tag]``) or Hugging Face (``hf.co/{owner}/{repo}:{quant}``),
        with progress lines unless ``stream`` is false."""
        body = await parse_body(s.PullRequest)
        updates = await core.downloads.pull(t.model_ref(body))
        if body.stream is not False:
            return t.ndjson_response(core.streams, t.pull_lines(updates))
        last = None
        async for task in updates:
            last = task
        if last is None or last.status != "completed":
            raise t.task_error(last) if last is not None else LlmdError("pull: no outcome")
        return jsonify({"status": "success"})

    @d.route("/api/push", ("POST",), summary="Push a model (not supported)", auth="admin")
    async def push() -> Any:
        """llmd pushes to no registry: a 400 that says so."""
        raise ValidationError("model: pushing to a registry is not supported by llmd", field="model")

    @d.route("/api/delete", ("DELETE",), summary="Delete a model", body=s.ModelRequest, auth="admin")
    async def delete() -> Any:
        """Remove a model (stopped first; its file too when llmd downloaded it), or just a copy's name."""
        body = await parse_body(s.ModelRequest)
        await core.models.remove(t.model_ref(body))
        return _empty()

    @d.route("/api/copy", ("POST",), summary="Copy a model", body=s.CopyRequest, auth="admin")
    async def copy() -> Any:
        """``destination`` becomes another name of ``source`` (an alias in the registry)."""
        body = await parse_body(s.CopyRequest)
        await core.models.copy(body.source, body.destination)
        return _empty()

    @d.route("/api/create", ("POST",), summary="Create a model", body=s.CreateRequest, auth="admin")
    async def create() -> Any:
        """A model from an uploaded GGUF blob (``files``) or another model (``from``), with its own ``system``
        prompt and ``parameters``."""
        body = await parse_body(s.CreateRequest)
        t.check_create(body)
        model = await core.models.create_from_blobs(
            t.model_ref(body), files=body.files, base=body.from_, system=body.system, parameters=body.parameters,
            template=body.template)
        if body.stream is False:
            return jsonify({"status": "success"})
        return t.ndjson_response(core.streams, t.lines_of(t.create_steps(model)))

    @d.route("/api/blobs/<digest>", ("HEAD",), summary="Whether a blob is on the server", auth="admin")
    async def has_blob(digest: str) -> Any:
        """200 when the blob is stored, else 404."""
        if await core.models.has_blob(digest):
            return _empty()
        raise NotFoundError(f"blob {digest} not found", field="digest")

    @d.route("/api/blobs/<digest>", ("POST",), summary="Upload a blob", auth="admin")
    async def put_blob(digest: str) -> Any:
        """The raw bytes of a file, checked against ``digest`` (``sha256:<hex>``); 201 when stored."""
        await core.models.put_blob(digest, request.body)
        return _empty(201)

    return d
