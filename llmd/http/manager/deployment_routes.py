"""Seed 004 routes: deployments (start/stop/restart/get/delete/list/logs/health/model-info) and chat.

A deployment is a model loaded into the engine, one per model, shared with
every other dialect (seed 000/001 load, seed 002 start): the same objects in
``core.deployments``. Ids are ``deploy_<n>``, stable per model. Seed 004 knows
the states starting, running, stopping, stopped and error; the core's brief
``pending`` is shown as ``starting``.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Any, Optional

from pydantic import Field
from quart import request

from llmd.core import Core
from llmd.core.types import DeploymentState
from llmd.errors import (
    ChatNotSupportedError, DeploymentNotRunningError, InvalidActionError, InvalidSourceError,
    ValidationError,
)
from llmd.http.api import Dialect, StrictModel, parse_body, parse_query, static_path_refusal
from llmd.http.manager.envelope import ok
from llmd.http.openai import translate as t
from llmd.http.openai.routes import openai_stream
from llmd.http.openai.schemas import ChatCompletionRequest, CompletionRequest
from llmd.http.streaming import sse_json, sse_response

SEED_STATES = ("starting", "running", "stopping", "stopped", "error")
SOURCES = ("huggingface", "ollama", "local", "bundled")
MIB = 1 << 20


class StartDeploymentBody(StrictModel):
    """``POST /api/deployments/start``."""

    model_id: str = Field(min_length=1, max_length=512,
                          description="A registry name or alias (a hub repo id that a download registered).")
    model_source: Optional[str] = Field(default=None, description="huggingface, ollama or local (recorded).")
    port: Optional[int] = Field(default=None, ge=1, le=65535,
                                description="Also serve the OpenAI API for just this model on this port.")
    gpu_memory_utilization: Optional[float] = Field(
        default=None, gt=0, le=1, description="Recorded; with a GPU, every layer is offloaded.")
    max_model_len: Optional[int] = Field(default=None, ge=16, le=1 << 20, description="Context tokens per slot.")
    n_gpu_layers: Optional[int] = Field(default=None, ge=-1, le=100000, description="Extension.")
    n_threads: Optional[int] = Field(default=None, ge=1, le=1024, description="Extension.")
    parallel: Optional[int] = Field(default=None, ge=1, le=256, description="Extension: sequence slots.")
    pinned: Optional[bool] = Field(default=None, description="Extension: never evicted or unloaded when idle.")
    wait: bool = Field(default=False, description="Extension: answer once loaded (else at once, 'starting').")
    timeout: Optional[float] = Field(default=None, gt=0, le=3600, description="Extension: with wait.")


class StopQuery(StrictModel):
    """``force`` cancels running generations; ``timeout`` bounds a graceful stop."""

    force: bool = False
    timeout: Optional[float] = Field(default=None, gt=0, le=3600)


class ListQuery(StrictModel):
    """``GET /api/deployments/list``."""

    status: Optional[str] = Field(default=None, description="starting, running, stopping, stopped or error")


class LogsQuery(StrictModel):
    """``GET /api/deployments/{id}/logs``."""

    lines: int = Field(default=100, ge=1, le=10000)
    follow: bool = Field(default=False, description="Extension: stream new lines as SSE.")


class ManagerChatBody(ChatCompletionRequest):
    """``POST /api/chat/{deployment_id}``: OpenAI's chat body; ``model`` is optional (the deployment decides)."""

    model: Optional[str] = Field(default=None, min_length=1, description="Ignored beyond a check that it exists.")


class ManagerCompletionBody(CompletionRequest):
    """``POST /api/completions/{deployment_id}``: OpenAI's completion body; ``model`` is optional."""

    model: Optional[str] = Field(default=None, min_length=1, description="Ignored beyond a check that it exists.")


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(
        timespec="seconds").replace("+00:00", "Z")


def _status(state: str) -> str:
    return "starting" if state == DeploymentState.PENDING.value else state


def render(core: Core, rec: dict[str, Any]) -> dict[str, Any]:
    """A deployment record in seed 004's field names (plus llmd's own figures)."""
    settings = rec.get("settings") or {}
    return {
        "deployment_id": rec["deployment_id"],
        "model_id": rec["model"],
        "model_source": rec.get("model_source"),
        "status": _status(rec["state"]),
        "host": core.config.server.host,
        "port": rec.get("port"),
        "gpu_memory_utilization": rec.get("gpu_memory_utilization"),
        "max_model_len": settings.get("n_ctx"),
        "created_at": _iso(rec.get("created_at")),
        "started_at": _iso(rec.get("started_at")),
        "stopped_at": _iso(rec.get("stopped_at")),
        "last_used": _iso(rec.get("last_used")),
        "idle_s": rec.get("idle_s", 0.0),
        "pinned": rec.get("pinned", False),
        "memory_mb": round((rec.get("memory_bytes") or 0) / MIB, 1),
        "error": rec.get("error"),
        "stop_reason": rec.get("stop_reason"),
        "note": rec.get("note"),
        "device": rec.get("device"),
        "queued": rec.get("queued", 0),
        "active": rec.get("active", 0),
        "settings": settings,
        "endpoints": {"chat": f"/api/chat/{rec['deployment_id']}",
                      "completions": f"/api/completions/{rec['deployment_id']}"},
    }


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the manager dialect."""

    async def record(deployment_id: str) -> dict[str, Any]:
        return render(core, await core.deployment_record(deployment_id))

    def not_reserved(deployment_id: str) -> None:
        # /api/deployments/start and /list are routes of their own, never ids: another method
        # on them is a 405, not "no deployment named 'start'".
        if deployment_id in ("start", "list"):
            raise static_path_refusal(request.path)

    @d.route("/api/deployments/start", ("POST",), summary="Start a deployment", body=StartDeploymentBody,
             auth="admin")
    async def start() -> Any:
        """Start (load) a model; 201 with ``status: starting`` for a new deployment, 200 with the running one
        when it already runs with these settings. A busy ``port`` is a 409; a model that does not fit the
        memory budget even after evicting idle deployments is INSUFFICIENT_RESOURCES with the figures."""
        body = await parse_body(StartDeploymentBody)
        if body.model_source is not None and body.model_source not in SOURCES:
            raise InvalidSourceError(f"model_source must be one of {', '.join(SOURCES[:3])}", field="model_source")
        model = await core.resolve(body.model_id)
        before = core.deployments.get(model.name)
        settings = {"max_model_len": body.max_model_len, "gpu_memory_utilization": body.gpu_memory_utilization,
                    "n_gpu_layers": body.n_gpu_layers, "n_threads": body.n_threads, "parallel": body.parallel}
        dep = await core.start_deployment(model.name, settings=settings, port=body.port, pinned=body.pinned,
                                          wait=body.wait, timeout=body.timeout, model_source=body.model_source)
        created = dep is not before
        data = await record(dep.id)
        return ok(data, "deployment starting" if data["status"] == "starting" else f"deployment {data['status']}",
                  201 if created else 200)

    @d.route("/api/deployments/list", summary="List deployments", query=ListQuery, auth="admin")
    async def list_deployments() -> Any:
        """Every deployment record, newest state first by id; ``status`` filters."""
        q = parse_query(ListQuery)
        if q.status is not None and q.status not in SEED_STATES:
            raise ValidationError(f"status must be one of {', '.join(SEED_STATES)}", field="status")
        items = [render(core, r) for r in await core.deployment_records()]
        if q.status is not None:
            items = [i for i in items if i["status"] == q.status]
        return ok({"items": items, "total": len(items)}, f"{len(items)} deployments")

    @d.route("/api/deployments/<deployment_id>", summary="Get a deployment", auth="admin")
    async def get_deployment(deployment_id: str) -> Any:
        """One deployment, in any state (a stopped one from its stored record)."""
        not_reserved(deployment_id)
        return ok(await record(deployment_id), "deployment")

    @d.route("/api/deployments/<deployment_id>/stop", ("PUT",), summary="Stop a deployment", query=StopQuery,
             auth="admin")
    async def stop(deployment_id: str) -> Any:
        """Stop: running generations finish (``timeout`` bounds that) unless ``force``; INVALID_ACTION
        when it is already stopped."""
        q = parse_query(StopQuery)
        rec = await core.deployment_record(deployment_id)
        if not rec["live"] or rec["state"] in ("stopped", "stopping"):
            raise InvalidActionError(f"deployment '{deployment_id}' is already {_status(rec['state'])}",
                                     details={"deployment_id": deployment_id, "status": rec["state"]})
        await core.stop_deployment(rec["model"], force=q.force, timeout=q.timeout)
        return ok(await record(deployment_id), "deployment stopped")

    @d.route("/api/deployments/<deployment_id>/restart", ("PUT",), summary="Restart a deployment",
             query=StopQuery, auth="admin")
    async def restart(deployment_id: str) -> Any:
        """Stop (if running) and start again with the same settings and port; answers once loaded."""
        q = parse_query(StopQuery)
        rec = await core.deployment_record(deployment_id)
        dep = await core.restart_deployment(rec["model"], force=q.force, timeout=q.timeout)
        return ok(await record(dep.id), f"deployment {_status(dep.state.value)}")

    @d.route("/api/deployments/<deployment_id>", ("DELETE",), summary="Delete a deployment", query=StopQuery,
             auth="admin")
    async def delete(deployment_id: str) -> Any:
        """Stop it if it runs (at once), then delete the record; the model and its log stay."""
        not_reserved(deployment_id)
        rec = await core.deployment_record(deployment_id)
        await core.delete_deployment(deployment_id)
        return ok({"deployment_id": deployment_id, "model_id": rec["model"], "deleted": True},
                  "deployment deleted")

    @d.route("/api/deployments/<deployment_id>/logs", summary="Deployment logs", query=LogsQuery, sse=True,
             auth="admin")
    async def logs(deployment_id: str) -> Any:
        """The model's last ``lines`` log lines (its own, llama.cpp's and errors), kept across restarts;
        ``follow=true`` streams them and then new lines as SSE (``data: {"ts", "level", "message"}``)."""
        q = parse_query(LogsQuery)
        rec = await core.deployment_record(deployment_id)
        name = rec["model"]
        if not q.follow:
            lines = await core.model_logs(name, q.lines)
            return ok({"deployment_id": deployment_id, "model_id": name,
                       "logs": [{**x, "timestamp": _iso(x.get("ts"))} for x in lines]},
                      f"{len(lines)} log lines")

        async def events() -> Any:
            async for entry in core.follow_model_log(name, q.lines, heartbeat_s=15.0):
                yield ": keep-alive\n\n" if entry is None else sse_json(entry)

        return sse_response(core, events())

    @d.route("/api/deployments/<deployment_id>/health", summary="Deployment health", auth="admin")
    async def health(deployment_id: str) -> Any:
        """``healthy`` when running with room in its queue; the state, queue and error otherwise."""
        rec = await core.deployment_record(deployment_id)
        status = _status(rec["state"])
        running = status == "running"
        full = running and rec.get("queued", 0) >= rec.get("queue_size", 1 << 30)
        verdict = "healthy" if running and not full else "busy" if full else "unhealthy"
        return ok({"deployment_id": deployment_id, "model_id": rec["model"], "status": verdict,
                   "healthy": verdict == "healthy", "deployment_status": status, "error": rec.get("error"),
                   "queued": rec.get("queued", 0), "active": rec.get("active", 0),
                   "uptime_s": round(time.time() - rec["started_at"], 1) if running and rec.get("started_at")
                   else None,
                   "checked_at": _iso(time.time())}, f"deployment is {verdict}")

    @d.route("/api/deployments/<deployment_id>/model-info", summary="Model of a deployment", auth="admin")
    async def model_info(deployment_id: str) -> Any:
        """The registry entry of the deployment's model, with its runtime figures when loaded."""
        rec = await core.deployment_record(deployment_id)
        model = await core.resolve(rec["model"])
        info = model.to_dict()
        info.update({"model_id": model.name, "has_chat_template": bool(model.chat_template),
                     "chat_supported": bool(model.chat_template), "deployment_id": deployment_id,
                     "status": _status(rec["state"]), "settings": rec.get("settings"),
                     "device": rec.get("device"), "memory_mb": round((rec.get("memory_bytes") or 0) / MIB, 1)})
        return ok(info, "model info")

    # -- inference on a deployment ------------------------------------------
    async def running(deployment_id: str, body: Any) -> Any:
        if body.model:
            await core.resolve(body.model)  # an unknown model is named in a 404, as elsewhere
        dep = core.deployment_by_id(deployment_id)
        if dep.state is not DeploymentState.RUNNING:
            raise DeploymentNotRunningError(
                f"deployment '{deployment_id}' is {_status(dep.state.value)}, not running",
                details={"deployment_id": deployment_id, "status": _status(dep.state.value), "error": dep.error})
        return dep

    @d.route("/api/chat/<deployment_id>", ("POST",), summary="Chat with a deployment", body=ManagerChatBody,
             sse=True, auth="inference")
    async def chat(deployment_id: str) -> Any:
        """OpenAI ``chat.completion`` inside the success envelope; ``stream`` gives OpenAI
        ``chat.completion.chunk`` SSE ending with ``[DONE]``. CHAT_NOT_SUPPORTED for a model without a
        chat template; DEPLOYMENT_NOT_RUNNING when it is not running."""
        body = await parse_body(ManagerChatBody)
        dep = await running(deployment_id, body)
        if not dep.model.chat_template:
            raise ChatNotSupportedError(f"model '{dep.model.name}' has no chat template; use "
                                        f"/api/completions/{deployment_id}",
                                        details={"deployment_id": deployment_id, "model": dep.model.name})
        req = t.chat_from_request(body)
        gen = await core.generate_on(dep, _addressed(req, "/api/chat"))
        cid, model = t.new_id("chatcmpl"), dep.model.name
        if not body.stream:
            return ok(t.chat_response(await gen.collect_or_raise(), cid, model), "chat completion")
        return openai_stream(core, gen, body, cid, model, "chat.completion.chunk",
                             piece=lambda created, text, finish: t.chat_chunk(
                                 cid, created, model, {} if finish else {"content": text}, finish),
                             first=lambda created: t.chat_chunk(cid, created, model,
                                                                {"role": "assistant", "content": ""}))

    @d.route("/api/completions/<deployment_id>", ("POST",), summary="Complete text with a deployment",
             body=ManagerCompletionBody, sse=True, auth="inference")
    async def completions(deployment_id: str) -> Any:
        """OpenAI ``text_completion`` inside the success envelope; ``stream`` gives OpenAI SSE chunks."""
        body = await parse_body(ManagerCompletionBody)
        dep = await running(deployment_id, body)
        req = t.completion_from_request(body)
        gen = await core.generate_on(dep, _addressed(req, "/api/completions"))
        cid, model = t.new_id("cmpl"), dep.model.name
        if not body.stream:
            return ok(t.completion_response(await gen.collect_or_raise(), cid, model), "text completion")
        return openai_stream(core, gen, body, cid, model, "text_completion",
                             piece=lambda created, text, finish: t.completion_chunk(cid, created, model, text, finish))


def _addressed(req: Any, endpoint: str) -> Any:
    """The request as the request log records it: seed 004's dialect and endpoint."""
    return dataclasses.replace(req, dialect="manager", endpoint=endpoint)
