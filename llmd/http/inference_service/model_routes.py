"""LLM Inference Service API routes: the model registry (``/api/models``), lifecycle tasks, logs and inference.

A model is addressed by its ``model-<n>`` id or by its registry name or
alias (no ``<path:...>`` converter: the LLM Manager API's hub routes own the
ids with a slash). Start, stop and restart answer 202 with a ``task_id`` at
once; the work goes on in the background and ``GET /api/tasks/{task_id}``
tells how it went.
"""

from __future__ import annotations

from typing import Any

from quart import jsonify, request

from llmd.core import Core
from llmd.errors import ValidationError
from llmd.http import openai_format as oai
from llmd.http.body import parse_body, parse_optional_body, parse_query
from llmd.http.format import page_block
from llmd.http.inference_service import translate as t
from llmd.http.inference_service.envelope import render_error
from llmd.http.inference_service.schemas import (
    ChatBody,
    CreateModelBody,
    DeleteQuery,
    EmbeddingsBody,
    GenerateBody,
    LifecycleBody,
    ListQuery,
    LogsQuery,
    StartBody,
    UpdateModelBody,
)
from llmd.http.routing import Dialect, is_static_path
from llmd.http.sse import follow_events, sse_json, sse_response

HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing a quiet log stream


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the LLM Inference Service API."""

    # -- registry -----------------------------------------------------------------

    @d.route("/api/models", summary="List models", query=ListQuery, auth="inference")
    async def list_models() -> Any:
        """``{"items", "total", "page", "size", "pages"}``; ``status`` and ``framework`` filter, ``size`` ≤ 100."""
        q = parse_query(ListQuery)
        page = await core.models.page(q.page, q.size, status=q.status, framework=q.framework, usage=True)
        return jsonify(page_block(page, t.model_summary))

    @d.route("/api/models", ("POST",), summary="Create a model", body=CreateModelBody, auth="admin")
    async def create_model() -> Any:
        """201 ``{"id", "name", "status": "created", "message"}``; a name in use is a 409 MODEL_ALREADY_EXISTS.

        ``llama.cpp``: ``config.model_path`` is a GGUF file on disk, read now.
        ``vllm``: ``config.model_path`` (or ``model_name``) is what the external
        server is told to serve.
        """
        body = await parse_body(CreateModelBody)
        if is_static_path(f"/api/models/{body.name}"):
            raise ValidationError(f"name: '{body.name}' is a path of another API; choose another name", field="name")
        model = await core.models.create(
            body.name, framework=body.framework, config=body.config.model_dump(exclude_none=True),
            display_name=body.display_name, description=body.description, priority=body.priority,
            resource_requirements=body.resource_requirements.model_dump(exclude_none=True), tags=body.tags)
        return jsonify(t.created(model)), 201

    @d.route("/api/models/<model_id>", summary="Get a model", auth="inference")
    async def get_model(model_id: str) -> Any:
        """The model with its status, health, config, ``resource_usage`` and ``performance_stats``."""
        return jsonify(t.model_detail(await core.models.detail(model_id)))

    @d.route("/api/models/<model_id>", ("PUT",), summary="Update a model", body=UpdateModelBody, auth="admin")
    async def update_model(model_id: str) -> Any:
        """Changes the fields given; ``config`` is merged (``null`` removes a key). Applies at the next start."""
        body = await parse_body(UpdateModelBody)
        detail = await core.models.update(
            model_id, config=body.config.model_dump(exclude_unset=True) if body.config is not None else None,
            display_name=body.display_name, description=body.description, priority=body.priority,
            resource_requirements=(body.resource_requirements.model_dump(exclude_none=True)
                                   if body.resource_requirements is not None else None), tags=body.tags)
        return jsonify({**t.model_detail(detail), "message": f"model '{detail.view.model.name}' updated"})

    @d.route("/api/models/<model_id>", ("DELETE",), summary="Delete a model", query=DeleteQuery, auth="admin")
    async def delete_model(model_id: str) -> Any:
        """A running model needs ``force=true`` (409 otherwise), which stops it first.

        The registry entry and the model's log go; the file only when llmd
        owns it (a download under the models directory), never a bundled or
        user-supplied file.
        """
        q = parse_query(DeleteQuery)
        return jsonify(t.deleted(await core.models.delete(model_id, force=q.force)))

    # -- lifecycle ----------------------------------------------------------------

    @d.route("/api/models/<model_id>/start", ("POST",), summary="Start a model", body=StartBody, auth="admin")
    async def start_model(model_id: str) -> Any:
        """202 ``{"message", "task_id"}``; the task fails with OPERATION_TIMEOUT, INSUFFICIENT_RESOURCES (with
        the figures) or the engine's error. ``force`` restarts a running model."""
        body = await parse_optional_body(StartBody)
        accepted = await core.models.start(model_id, settings=t.start_settings(body.settings), force=body.force,
                                           timeout=body.timeout)
        return jsonify(t.accepted(accepted)), 202

    @d.route("/api/models/<model_id>/stop", ("POST",), summary="Stop a model", body=LifecycleBody, auth="admin")
    async def stop_model(model_id: str) -> Any:
        """202 with a ``task_id``; without ``force`` running generations may finish until ``timeout``."""
        body = await parse_optional_body(LifecycleBody)
        return jsonify(t.accepted(await core.models.stop(model_id, force=body.force, timeout=body.timeout))), 202

    @d.route("/api/models/<model_id>/restart", ("POST",), summary="Restart a model", body=LifecycleBody,
             auth="admin")
    async def restart_model(model_id: str) -> Any:
        """202 with a ``task_id``: stop (``force``, ``timeout`` as for stop), then start with the same settings."""
        body = await parse_optional_body(LifecycleBody)
        accepted = await core.models.restart(model_id, force=body.force, timeout=body.timeout)
        return jsonify(t.accepted(accepted)), 202

    @d.route("/api/tasks/<task_id>", summary="Get a task", auth="admin")
    async def get_task(task_id: str) -> Any:
        """A start, stop or restart: ``status`` pending, running, completed or failed, with its result or error."""
        return jsonify(t.task_view(core.models.task(task_id)))

    # -- logs ---------------------------------------------------------------------

    @d.route("/api/models/<model_id>/logs", summary="Get a model's logs", query=LogsQuery, sse=True, auth="admin")
    async def model_logs(model_id: str) -> Any:
        """``{"logs": [{"timestamp", "level", "message"}]}``: the last ``lines`` lines (also of a stopped model).

        ``follow=true``: an SSE stream of those lines, then each new one as it
        is logged (``data: {"timestamp", "level", "message"}``), with a comment
        every 15 s; it ends when the client leaves.
        """
        q = parse_query(LogsQuery)
        path = request.path
        if q.follow:
            entries = await core.models.follow_logs(model_id, q.lines, HEARTBEAT_S)
            return sse_response(core.streams, follow_events(
                entries, lambda e: sse_json(t.log_entry(e)), lambda err: sse_json(render_error(err, path)[0]),
                f"the log of {model_id}"))
        model, lines = await core.models.read_logs(model_id, q.lines)
        return jsonify({"logs": [t.log_entry(e) for e in lines], "model_id": model.external_id})

    # -- inference ----------------------------------------------------------------

    @d.route("/api/models/<model_id>/generate", ("POST",), summary="Generate text with a model", body=GenerateBody,
             sse=True, auth="inference")
    async def generate(model_id: str) -> Any:
        """``{"id", "model", "choices": [{"text", "finish_reason", "index"}], "usage", "created"}``.

        The prompt is continued as it is (no chat template). ``stream``: SSE
        ``data: {"id", "choices": [{"text", "index"}]}`` ... a last event with
        ``finish_reason`` and ``usage``, then ``data: [DONE]``.
        """
        body = await parse_body(GenerateBody)
        gen = await core.inference.generate(t.generate_request(body, model_id, "/api/models/{model_id}/generate"))
        gid = oai.new_id("gen")
        if not body.stream:
            return jsonify(oai.completion_response(await gen.collect_or_raise(), gid, gen.model))
        path = request.path
        return oai.openai_stream(core.streams, gen, cid=gid, model=gen.model, chat=False, usage="last",
                                 error=lambda err: render_error(err, path)[0])

    @d.route("/api/models/<model_id>/chat/completions", ("POST",), summary="Chat with a model", body=ChatBody,
             sse=True, auth="inference")
    async def chat(model_id: str) -> Any:
        """``{"id", "model", "choices": [{"message": {"role", "content"}, "finish_reason", "index"}], "usage"}``.

        ``stream``: OpenAI ``chat.completion.chunk`` events, then ``data: [DONE]``.
        """
        body = await parse_body(ChatBody)
        gen = await core.inference.generate(t.chat_request(body, model_id, "/api/models/{model_id}/chat/completions"))
        cid = oai.new_id("chat")
        if not body.stream:
            return jsonify(oai.chat_response(await gen.collect_or_raise(), cid, gen.model))
        path = request.path
        return oai.openai_stream(core.streams, gen, cid=cid, model=gen.model, chat=True, usage="last",
                                 error=lambda err: render_error(err, path)[0])

    @d.route("/api/models/<model_id>/embeddings", ("POST",), summary="Embed text with a model", body=EmbeddingsBody,
             auth="inference")
    async def embeddings(model_id: str) -> Any:
        """``{"data": [{"embedding", "index"}], "model", "usage"}``: mean-pooled, normalised vectors."""
        body = await parse_body(EmbeddingsBody)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        return jsonify(oai.embeddings_response(await core.inference.embed(model_id, inputs), body.encoding_format))
