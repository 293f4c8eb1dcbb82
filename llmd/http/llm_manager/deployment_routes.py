"""LLM Manager API routes: deployments (start/stop/restart/get/delete/list/logs/health/model-info) and inference.

A deployment is a model loaded into the engine, one per model, shared with
every other API (the EasyVizAI and API Interface Specification loads, the
LLM Inference Service starts): the core's fleet. Ids are ``deploy_<n>``,
stable per model. This API knows the states starting, running, stopping,
stopped and error; the core's brief ``pending`` is shown as ``starting``.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field
from quart import request

from llmd.core import Core
from llmd.errors import InvalidSourceError, ValidationError
from llmd.http import openai_format as oai
from llmd.http.body import parse_body, parse_query
from llmd.http.fields import ContextLength, GpuLayers, GpuShare, LogLines, Port, Slots, StrictModel, Threads
from llmd.http.llm_manager import translate as t
from llmd.http.llm_manager.envelope import ok, render_error
from llmd.http.openai_schemas import ChatCompletionRequest, CompletionRequest
from llmd.http.routing import Dialect
from llmd.http.sse import follow_events, sse_json, sse_response

STATES = ("starting", "running", "stopping", "stopped", "error")
SOURCES = ("huggingface", "ollama", "local", "bundled")
HEARTBEAT_S = 15.0


class StartDeploymentBody(StrictModel):
    """``POST /api/deployments/start``."""

    model_id: str = Field(min_length=1, max_length=512,
                          description="A registry name or alias (a hub repo id that a download registered).")
    model_source: Optional[str] = Field(default=None, max_length=32,
                                        description="huggingface, ollama or local (recorded).")
    port: Optional[Port] = Field(default=None,
                                 description="Also serve the OpenAI API for just this model on this port.")
    gpu_memory_utilization: Optional[GpuShare] = Field(
        default=None, description="Recorded; with a GPU, every layer is offloaded.")
    max_model_len: Optional[ContextLength] = None
    n_gpu_layers: Optional[GpuLayers] = Field(default=None, description="Extension.")
    n_threads: Optional[Threads] = Field(default=None, description="Extension.")
    parallel: Optional[Slots] = Field(default=None, description="Extension: sequence slots.")
    pinned: Optional[bool] = Field(default=None, description="Extension: never evicted or unloaded when idle.")
    wait: bool = Field(default=False, description="Extension: answer once loaded (else at once, 'starting').")
    timeout: Optional[float] = Field(default=None, gt=0, le=3600, description="Extension: with wait.")


class StopQuery(StrictModel):
    """``force`` cancels running generations; ``timeout`` bounds a graceful stop."""

    force: bool = False
    timeout: Optional[float] = Field(default=None, gt=0, le=3600)


class ListQuery(StrictModel):
    """``GET /api/deployments/list``."""

    status: Optional[str] = Field(default=None, max_length=16,
                                  description="starting, running, stopping, stopped or error")


class LogsQuery(StrictModel):
    """``GET /api/deployments/{id}/logs``."""

    lines: LogLines = 100
    follow: bool = Field(default=False, description="Extension: stream new lines as SSE.")


class ManagerChatBody(ChatCompletionRequest):
    """``POST /api/chat/{deployment_id}``: OpenAI's chat body; ``model`` is optional (the deployment decides)."""

    model: Optional[str] = Field(default=None, min_length=1, description="Ignored beyond a check that it exists.")


class ManagerCompletionBody(CompletionRequest):
    """``POST /api/completions/{deployment_id}``: OpenAI's completion body; ``model`` is optional."""

    model: Optional[str] = Field(default=None, min_length=1, description="Ignored beyond a check that it exists.")


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the LLM Manager API."""
    host = core.config.server.host

    @d.route("/api/deployments/start", ("POST",), summary="Start a deployment", body=StartDeploymentBody,
             auth="admin")
    async def start() -> Any:
        """Start (load) a model; 201 with ``status: starting`` for a new deployment, 200 with the running one
        when it already runs with these settings. A busy ``port`` is a 409; a model that does not fit the
        memory budget even after evicting idle deployments is INSUFFICIENT_RESOURCES with the figures."""
        body = await parse_body(StartDeploymentBody)
        if body.model_source is not None and body.model_source not in SOURCES:
            raise InvalidSourceError(f"model_source must be one of {', '.join(SOURCES[:3])}", field="model_source")
        settings = {"max_model_len": body.max_model_len, "gpu_memory_utilization": body.gpu_memory_utilization,
                    "n_gpu_layers": body.n_gpu_layers, "n_threads": body.n_threads, "parallel": body.parallel}
        info, created = await core.fleet.start_deployment(
            body.model_id, settings=settings, port=body.port, pinned=body.pinned, wait=body.wait,
            timeout=body.timeout, model_source=body.model_source)
        data = t.deployment(info, host)
        return ok(data, "deployment starting" if data["status"] == "starting" else f"deployment {data['status']}",
                  201 if created else 200)

    @d.route("/api/deployments/list", summary="List deployments", query=ListQuery, auth="admin")
    async def list_deployments() -> Any:
        """Every deployment record, newest state first by id; ``status`` filters."""
        q = parse_query(ListQuery)
        if q.status is not None and q.status not in STATES:
            raise ValidationError(f"status must be one of {', '.join(STATES)}", field="status")
        items = [t.deployment(i, host) for i in await core.fleet.records(q.status)]
        return ok({"items": items, "total": len(items)}, f"{len(items)} deployments")

    @d.route("/api/deployments/<deployment_id>", summary="Get a deployment", auth="admin")
    async def get_deployment(deployment_id: str) -> Any:
        """One deployment, in any state (a stopped one from its stored record)."""
        return ok(t.deployment(await core.fleet.record(deployment_id), host), "deployment")

    @d.route("/api/deployments/<deployment_id>/stop", ("PUT",), summary="Stop a deployment", query=StopQuery,
             auth="admin")
    async def stop(deployment_id: str) -> Any:
        """Stop: running generations finish (``timeout`` bounds that) unless ``force``; INVALID_ACTION
        when it is already stopped."""
        q = parse_query(StopQuery)
        info = await core.fleet.stop_deployment(deployment_id, force=q.force, timeout=q.timeout)
        return ok(t.deployment(info, host), "deployment stopped")

    @d.route("/api/deployments/<deployment_id>/restart", ("PUT",), summary="Restart a deployment",
             query=StopQuery, auth="admin")
    async def restart(deployment_id: str) -> Any:
        """Stop (if running) and start again with the same settings and port; answers once loaded."""
        q = parse_query(StopQuery)
        info = await core.fleet.restart_deployment(deployment_id, force=q.force, timeout=q.timeout)
        return ok(t.deployment(info, host), f"deployment {t.status(info.state)}")

    @d.route("/api/deployments/<deployment_id>", ("DELETE",), summary="Delete a deployment", query=StopQuery,
             auth="admin")
    async def delete(deployment_id: str) -> Any:
        """Stop it if it runs (at once), then delete the record; the model and its log stay."""
        parse_query(StopQuery)  # declared on the route: a bad force or timeout is a 400, not ignored
        info = await core.fleet.delete_deployment(deployment_id)
        return ok({"deployment_id": deployment_id, "model_id": info.model, "deleted": True}, "deployment deleted")

    @d.route("/api/deployments/<deployment_id>/logs", summary="Deployment logs", query=LogsQuery, sse=True,
             auth="admin")
    async def logs(deployment_id: str) -> Any:
        """The model's last ``lines`` log lines (its own, llama.cpp's and errors), kept across restarts;
        ``follow=true`` streams them and then new lines as SSE (``data: {"ts", "level", "message"}``)."""
        q = parse_query(LogsQuery)
        if q.follow:
            path = request.path
            entries = await core.fleet.follow_logs_of(deployment_id, q.lines, HEARTBEAT_S)
            return sse_response(core.streams, follow_events(
                entries, lambda e: sse_json(t.follow_entry(e)), lambda err: sse_json(render_error(err, path)[0]),
                f"the log of {deployment_id}"))
        info, lines = await core.fleet.logs_of(deployment_id, q.lines)
        return ok({"deployment_id": deployment_id, "model_id": info.model, "logs": [t.log_entry(e) for e in lines]},
                  f"{len(lines)} log lines")

    @d.route("/api/deployments/<deployment_id>/health", summary="Deployment health", auth="admin")
    async def health(deployment_id: str) -> Any:
        """``healthy`` when running with room in its queue; the state, queue and error otherwise."""
        h = await core.fleet.health_of(deployment_id)
        return ok(t.deployment_health(h), f"deployment is {h.verdict}")

    @d.route("/api/deployments/<deployment_id>/model-info", summary="Model of a deployment", auth="admin")
    async def model_info(deployment_id: str) -> Any:
        """The registry entry of the deployment's model, with its runtime figures when loaded."""
        return ok(t.model_info(*await core.fleet.model_of(deployment_id)), "model info")

    # -- inference on a deployment ------------------------------------------

    @d.route("/api/chat/<deployment_id>", ("POST",), summary="Chat with a deployment", body=ManagerChatBody,
             sse=True, auth="inference")
    async def chat(deployment_id: str) -> Any:
        """OpenAI ``chat.completion`` inside the success envelope; ``stream`` gives OpenAI
        ``chat.completion.chunk`` SSE ending with ``[DONE]``. CHAT_NOT_SUPPORTED for a model without a
        chat template; DEPLOYMENT_NOT_RUNNING when it is not running."""
        body = await parse_body(ManagerChatBody)
        req = oai.chat_from_request(body, dialect="llm_manager", endpoint="/api/chat")
        gen = await core.inference.generate_on(deployment_id, req, chat=True)
        cid = oai.new_id("chatcmpl")
        if not body.stream:
            return ok(oai.chat_response(await gen.collect_or_raise(), cid, gen.model, choices=gen.results,
                                        logprobs=bool(body.logprobs)), "chat completion")
        return oai.openai_stream(core.streams, gen, cid=cid, model=gen.model, chat=True, usage=oai.usage_mode(body))

    @d.route("/api/completions/<deployment_id>", ("POST",), summary="Complete text with a deployment",
             body=ManagerCompletionBody, sse=True, auth="inference")
    async def completions(deployment_id: str) -> Any:
        """OpenAI ``text_completion`` inside the success envelope; ``stream`` gives OpenAI SSE chunks."""
        body = await parse_body(ManagerCompletionBody)
        req = oai.completion_from_request(body, dialect="llm_manager", endpoint="/api/completions")
        gen = await core.inference.generate_on(deployment_id, req, chat=False)
        cid = oai.new_id("cmpl")
        if not body.stream:
            return ok(oai.completion_response(await gen.collect_or_raise(), cid, gen.model, choices=gen.results,
                                              logprobs=body.logprobs is not None), "text completion")
        return oai.openai_stream(core.streams, gen, cid=cid, model=gen.model, chat=False, usage=oai.usage_mode(body))

