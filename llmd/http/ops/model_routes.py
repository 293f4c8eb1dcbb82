"""Seed 002 routes: the model registry (``/api/models``), lifecycle tasks, logs and per-model inference.

A model is addressed by seed 002's id ``model-<n>`` or by its registry name
or alias (no ``<path:...>`` converter: seed 004's hub routes own the ids with
a slash). Start, stop and restart answer 202 with a ``task_id`` at once; the
work goes on in ``core.tasks`` and ``GET /api/tasks/{task_id}`` tells how it
went.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from types import SimpleNamespace
from typing import Any, AsyncIterator

import psutil
from quart import jsonify, request

from llmd.core import Core
from llmd.core.registry import Model
from llmd.core.tasks import Task
from llmd.core.types import DeploymentState
from llmd.errors import (
    ConflictError, EngineError, InsufficientResourcesError, InternalError, InvalidJSONError, LlmdError,
    OperationTimeoutError, ValidationError,
)
from llmd.http.api import Dialect, parse_body, parse_model, parse_query, static_path_refusal
from llmd.http.manager import HUB_PATHS
from llmd.http.manager.envelope import render_error as manager_error
from llmd.http.openai import translate as oai
from llmd.http.ops import translate as t
from llmd.http.ops.envelope import error_code, render_error
from llmd.http.ops.schemas import (
    ChatBody, CreateModelBody, DeleteQuery, EmbeddingsBody, GenerateBody, LifecycleBody, ListQuery, LogsQuery,
    StartBody, UpdateModelBody,
)
from llmd.http.streaming import render_stream, sse, sse_json, sse_response

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing a quiet log stream
MB = 1 << 20


async def optional_body(model: type) -> Any:
    """A body that may be left out (the seed's ``curl -X POST .../start``): absent means the defaults.

    A request that says it sends JSON must send a JSON object, so an empty
    body with ``Content-Type: application/json`` is still a 400.
    """
    raw = await request.get_data(as_text=False)
    if raw and raw.strip():
        return parse_model(model, raw)
    if (request.content_type or "").startswith("application/json"):
        raise InvalidJSONError("the request body must be a JSON object (or leave it out)", field="body")
    return model()


def hub_path_refusal(model_id: str) -> Any:
    """A 405 in seed 004's envelope for a method that seed 004's static path does not take.

    ``/api/models/search`` (and ``categories``, ``trending``, ``stats``,
    ``sync``) belong to seed 004; werkzeug hands the methods those routes do
    not declare to ``/api/models/<model_id>``, where they must not read as
    "no model named search".
    """
    path = f"/api/models/{model_id}"
    if path not in HUB_PATHS:
        return None
    err = static_path_refusal(path)
    body, status = manager_error(err, path)
    resp = jsonify(body)
    resp.status_code = status
    resp.headers.update(err.headers)
    return resp


def state_of(core: Core, model: Model) -> str:
    """The model's deployment state: ``stopped`` without a live deployment."""
    dep = core.deployments.get(model.name)
    return dep.state.value if dep is not None else DeploymentState.STOPPED.value


def _usage(pid: int, with_children: bool, estimate_bytes: int, external: bool) -> dict[str, Any]:
    """psutil figures of the process serving a deployment (blocking: samples the CPU for 0.1 s)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc] + (proc.children(recursive=True) if with_children else [])
        for p in procs:
            p.cpu_percent(None)
        time.sleep(0.1)
        cpu = sum(p.cpu_percent(None) for p in procs)
        rss = sum(p.memory_info().rss for p in procs)
        threads = sum(p.num_threads() for p in procs)
    except psutil.Error:
        return {}
    # The in-process engine shares the daemon's process: the model's part is its estimate
    # (weights and KV cache); an external engine's process is all the model's.
    memory = rss if external or not estimate_bytes else estimate_bytes
    return {"memory": round(memory / MB), "memory_bytes": memory, "process_memory": round(rss / MB),
            "cpu_percent": round(cpu, 1), "cpu_cores": round(cpu / 100, 2), "gpu_memory": 0, "pid": pid,
            "threads": threads, "process": "external" if external else "llmd"}


async def resource_usage(core: Core, model: Model) -> dict[str, Any]:
    """``resource_usage`` of a running model: the memory and CPU of the process that serves it."""
    dep = core.deployments.get(model.name)
    if dep is None or dep.state is not DeploymentState.RUNNING:
        return {}
    external = bool(getattr(dep, "external", False))
    pid = getattr(dep, "pid", None) if external else os.getpid()
    if not pid:
        return {}
    out = await asyncio.to_thread(_usage, pid, external, int(getattr(dep, "memory_bytes", 0) or 0), external)
    if out:
        stats = dep.stats()
        out.update({"active_requests": stats.get("active", 0), "queued_requests": stats.get("queued", 0),
                    "device": stats.get("device"), "deployment_id": getattr(dep, "id", None) or None})
    return out


def task_view(task: Task) -> dict[str, Any]:
    """A task as seed 002's clients read it: ``status`` and error codes in the document's spelling."""
    out = task.to_dict()
    out["status"] = task.state
    for key in ("created_at", "started_at", "finished_at"):
        out[key] = t.iso(out[key])
    if task.error:
        code = error_code(SimpleNamespace(code=task.error.get("code", "internal_error")))  # type: ignore[arg-type]
        out["error"] = {**task.error, "code": code}
    return out


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the ops dialect."""

    async def lookup(model_id: str) -> Model:
        model = await core.registry.get_id(model_id)
        core.auth.check_model(model)
        return model

    # -- registry -----------------------------------------------------------------

    @d.route("/api/models", summary="List models", query=ListQuery, auth="inference")
    async def list_models() -> Any:
        """``{"items", "total", "page", "size", "pages"}``; ``status`` and ``framework`` filter, ``size`` ≤ 100."""
        q = parse_query(ListQuery)
        models = [m for m in await core.registry.list() if q.framework is None or m.framework == q.framework]
        states = {m.name: state_of(core, m) for m in models}
        if q.status is not None:
            models = [m for m in models if states[m.name] == q.status]
        block = t.page(models, q.page, q.size)
        usages = await asyncio.gather(*(resource_usage(core, m) for m in block["items"]))
        block["items"] = [t.model_summary(m, states[m.name], u) for m, u in zip(block["items"], usages)]
        return jsonify(block)

    @d.route("/api/models", ("POST",), summary="Create a model", body=CreateModelBody, auth="admin")
    async def create_model() -> Any:
        """201 ``{"id", "name", "status": "created", "message"}``; a name in use is a 409 MODEL_ALREADY_EXISTS.

        ``llama.cpp``: ``config.model_path`` is a GGUF file on disk, read now.
        ``vllm``: ``config.model_path`` (or ``model_name``) is what the external
        server is told to serve.
        """
        body = await parse_body(CreateModelBody)
        if f"/api/models/{body.name}" in HUB_PATHS:
            raise ValidationError(f"name: '{body.name}' is a path of the hub API; choose another name", field="name")
        model = await core.registry.create(
            body.name, framework=body.framework, config=body.config.model_dump(exclude_none=True),
            display_name=body.display_name, description=body.description, priority=body.priority,
            resource_requirements=body.resource_requirements.model_dump(exclude_none=True), tags=body.tags)
        return jsonify(t.created(model)), 201

    @d.route("/api/models/<model_id>", summary="Get a model", auth="inference")
    async def get_model(model_id: str) -> Any:
        """The model with its status, health, config, ``resource_usage`` and ``performance_stats``."""
        refused = hub_path_refusal(model_id)
        if refused is not None:
            return refused
        model = await lookup(model_id)
        dep = core.deployments.get(model.name)
        stats = await core.store.requests.model_stats(model.name)
        return jsonify(t.model_detail(model, state_of(core, model), await resource_usage(core, model),
                                      t.performance(stats), dep.error if dep is not None else None))

    @d.route("/api/models/<model_id>", ("PUT",), summary="Update a model", body=UpdateModelBody, auth="admin")
    async def update_model(model_id: str) -> Any:
        """Changes the fields given; ``config`` is merged (``null`` removes a key). Applies at the next start."""
        refused = hub_path_refusal(model_id)
        if refused is not None:
            return refused
        body = await parse_body(UpdateModelBody)
        model = await lookup(model_id)
        config = body.config.model_dump(exclude_unset=True) if body.config is not None else None
        requirements = (body.resource_requirements.model_dump(exclude_none=True)
                        if body.resource_requirements is not None else None)
        model = await core.registry.update(
            model.name, config=config, display_name=body.display_name, description=body.description,
            priority=body.priority, resource_requirements=requirements, tags=body.tags)
        stats = await core.store.requests.model_stats(model.name)
        return jsonify({**t.model_detail(model, state_of(core, model), await resource_usage(core, model),
                                         t.performance(stats)), "message": f"model '{model.name}' updated"})

    @d.route("/api/models/<model_id>", ("DELETE",), summary="Delete a model", query=DeleteQuery, auth="admin")
    async def delete_model(model_id: str) -> Any:
        """A running model needs ``force=true`` (409 otherwise), which stops it first.

        The registry entry and the model's log go; the file only when llmd
        owns it (a download under the models directory), never a bundled or
        user-supplied file.
        """
        refused = hub_path_refusal(model_id)
        if refused is not None:
            return refused
        q = parse_query(DeleteQuery)
        model = await lookup(model_id)
        state = state_of(core, model)
        if state in ("running", "starting", "pending", "stopping"):
            if not q.force:
                raise ConflictError(
                    f"model '{model.name}' is {state}; stop it first or delete with force=true",
                    field="force", details={"model_id": model.external_id, "status": state})
            await core.stop_deployment(model.name, force=True)
        elif model.name in core.deployments:  # a failed deployment: clear it away
            await core.stop_deployment(model.name, force=True)
        removed = await core.registry.delete(model.name, owned_dir=core.config.models_dir)
        await asyncio.to_thread(core.model_log(model.name).remove)
        return jsonify({"message": f"model '{model.name}' deleted", "id": model.external_id, "name": model.name,
                        "file_removed": removed})

    # -- lifecycle ----------------------------------------------------------------

    def spawn(action: str, model: Model, work: Any) -> Any:
        task = core.tasks.spawn(action, model.name, work)
        return jsonify(t.accepted(task, model, action)), 202

    async def started(model: Model, dep: Any) -> dict[str, Any]:
        """A start's outcome: the result, or the deployment's typed failure raised."""
        if dep.state is not DeploymentState.RUNNING:
            failure = getattr(dep, "failure", None)
            if isinstance(failure, LlmdError):
                raise failure
            raise EngineError(f"model '{model.name}' failed to start: {dep.error}",
                              details={"model_id": model.external_id, "state": dep.state.value})
        return {"model_id": model.external_id, "status": dep.state.value,
                "deployment_id": getattr(dep, "id", None) or None, "settings": dep.settings.to_dict()}

    async def start_and_check(model: Model, coro: Any) -> dict[str, Any]:
        try:
            dep = await coro
        except (OperationTimeoutError, InsufficientResourcesError):
            raise
        except LlmdError as err:
            failure = getattr(core.deployments.get(model.name), "failure", None)
            raise failure if isinstance(failure, LlmdError) else err from None
        return await started(model, dep)

    @d.route("/api/models/<model_id>/start", ("POST",), summary="Start a model", body=StartBody, auth="admin")
    async def start_model(model_id: str) -> Any:
        """202 ``{"message", "task_id"}``; the task fails with OPERATION_TIMEOUT, INSUFFICIENT_RESOURCES (with
        the figures) or the engine's error. ``force`` restarts a running model."""
        body = await optional_body(StartBody)
        model = await lookup(model_id)
        settings = t.start_settings(body.settings)

        async def work(task: Task) -> dict[str, Any]:
            task.message = f"starting '{model.name}'"
            if body.force and state_of(core, model) == "running":
                await core.stop_deployment(model.name, force=True, timeout=body.timeout)
            result = await start_and_check(
                model, core.start_deployment(model.name, settings=settings, wait=True, timeout=body.timeout))
            task.message = f"model '{model.name}' is running"
            return result

        return spawn("start", model, work)

    @d.route("/api/models/<model_id>/stop", ("POST",), summary="Stop a model", body=LifecycleBody, auth="admin")
    async def stop_model(model_id: str) -> Any:
        """202 with a ``task_id``; without ``force`` running generations may finish until ``timeout``."""
        body = await optional_body(LifecycleBody)
        model = await lookup(model_id)

        async def work(task: Task) -> dict[str, Any]:
            task.message = f"stopping '{model.name}'"
            was_running = await core.stop_deployment(model.name, force=body.force, timeout=body.timeout)
            task.message = f"model '{model.name}' " + ("is stopped" if was_running else "was not running")
            return {"model_id": model.external_id, "status": "stopped", "was_running": was_running}

        return spawn("stop", model, work)

    @d.route("/api/models/<model_id>/restart", ("POST",), summary="Restart a model", body=LifecycleBody,
             auth="admin")
    async def restart_model(model_id: str) -> Any:
        """202 with a ``task_id``: stop (``force``, ``timeout`` as for stop), then start with the same settings."""
        body = await optional_body(LifecycleBody)
        model = await lookup(model_id)

        async def work(task: Task) -> dict[str, Any]:
            task.message = f"restarting '{model.name}'"
            result = await start_and_check(
                model, core.restart_deployment(model.name, force=body.force, timeout=body.timeout))
            task.message = f"model '{model.name}' is running"
            return result

        return spawn("restart", model, work)

    @d.route("/api/tasks/<task_id>", summary="Get a task", auth="admin")
    async def get_task(task_id: str) -> Any:
        """A start, stop or restart: ``status`` pending, running, completed or failed, with its result or error."""
        return jsonify(task_view(core.tasks.get(task_id)))

    # -- logs ---------------------------------------------------------------------

    @d.route("/api/models/<model_id>/logs", summary="Get a model's logs", query=LogsQuery, sse=True, auth="admin")
    async def model_logs(model_id: str) -> Any:
        """``{"logs": [{"timestamp", "level", "message"}]}``: the last ``lines`` lines (also of a stopped model).

        ``follow=true``: an SSE stream of those lines, then each new one as it
        is logged (``data: {"timestamp", "level", "message"}``), with a comment
        every 15 s; it ends when the client leaves.
        """
        q = parse_query(LogsQuery)
        model = await lookup(model_id)
        if not q.follow:
            return jsonify({"logs": [t.log_entry(e) for e in await core.model_logs(model.name, q.lines)],
                            "model_id": model.external_id})

        async def events() -> AsyncIterator[str]:
            try:
                async for entry in core.follow_model_log(model.name, q.lines, HEARTBEAT_S):
                    yield ": keep-alive\n\n" if entry is None else sse_json(t.log_entry(entry))
            except LlmdError as err:
                yield sse_json(render_error(err, path)[0])
            except Exception:  # noqa: BLE001 - logged with traceback, never sent
                log.exception("reading the log of %s failed", model.name)
                yield sse_json(render_error(InternalError("reading the log failed"), path)[0])

        path = request.path
        return sse_response(core, events())

    # -- inference ----------------------------------------------------------------

    def stream(gen: Any, piece: Any, first: Any = None) -> Any:
        """SSE of OpenAI-shaped chunks: ``piece(created, text, finish_reason)`` builds one; the last one
        carries ``finish_reason`` and ``usage``; then ``[DONE]``. An error is one envelope event, then ``[DONE]``."""
        created = int(time.time())
        path = request.path

        def end(result: Any) -> list[str]:
            last = piece(created, "", oai.finish_reason(result))
            return [sse_json({**last, "usage": result.usage.to_dict()}), sse("[DONE]")]

        return sse_response(core, render_stream(
            gen, start=(lambda: sse_json(first(created))) if first else None,
            token=lambda text: sse_json(piece(created, text, None)), end=end,
            error=lambda err: [sse_json(render_error(err, path)[0]), sse("[DONE]")]))

    @d.route("/api/models/<model_id>/generate", ("POST",), summary="Generate text with a model", body=GenerateBody,
             sse=True, auth="inference")
    async def generate(model_id: str) -> Any:
        """``{"id", "model", "choices": [{"text", "finish_reason", "index"}], "usage", "created"}``.

        The prompt is continued as it is (no chat template). ``stream``: SSE
        ``data: {"id", "choices": [{"text", "index"}]}`` ... a last event with
        ``finish_reason`` and ``usage``, then ``data: [DONE]``.
        """
        body = await parse_body(GenerateBody)
        model = await lookup(model_id)
        gen = await core.generate(t.generate_request(body, model, "/api/models/{model_id}/generate"))
        gid = oai.new_id("gen")
        if not body.stream:
            return jsonify(oai.completion_response(await gen.collect_or_raise(), gid, model.name))
        return stream(gen, lambda created, text, finish: oai.completion_chunk(gid, created, model.name, text, finish))

    @d.route("/api/models/<model_id>/chat/completions", ("POST",), summary="Chat with a model", body=ChatBody,
             sse=True, auth="inference")
    async def chat(model_id: str) -> Any:
        """``{"id", "model", "choices": [{"message": {"role", "content"}, "finish_reason", "index"}], "usage"}``.

        ``stream``: OpenAI ``chat.completion.chunk`` events, then ``data: [DONE]``.
        """
        body = await parse_body(ChatBody)
        model = await lookup(model_id)
        gen = await core.generate(t.chat_request(body, model, "/api/models/{model_id}/chat/completions"))
        cid = oai.new_id("chat")
        if not body.stream:
            return jsonify(oai.chat_response(await gen.collect_or_raise(), cid, model.name))
        return stream(gen, lambda created, text, finish: oai.chat_chunk(
            cid, created, model.name, {} if finish else {"content": text}, finish),
            first=lambda created: oai.chat_chunk(cid, created, model.name, {"role": "assistant", "content": ""}))

    @d.route("/api/models/<model_id>/embeddings", ("POST",), summary="Embed text with a model", body=EmbeddingsBody,
             auth="inference")
    async def embeddings(model_id: str) -> Any:
        """``{"data": [{"embedding", "index"}], "model", "usage"}``: mean-pooled, normalised vectors."""
        body = await parse_body(EmbeddingsBody)
        model = await lookup(model_id)
        inputs = [body.input] if isinstance(body.input, str) else body.input
        result = await core.embed(model.name, inputs)
        return jsonify(oai.embeddings_response(result, body.encoding_format, None))
