"""The core: the composition root that every HTTP handler receives.

It knows nothing of HTTP. Dialects parse a request into core types, call one
method here, and render the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Any, Callable, Sequence

import psutil

from llmd import __version__
from llmd.config import Config
from llmd.core.deployments import Deployment, Generation
from llmd.core.downloads import DownloadManager
from llmd.core.modellog import ModelLog
from llmd.core.engine.base import Engine
from llmd.core.auth import Auth
from llmd.core.events import EventBroker
from llmd.core.fleet import LIVE, Fleet, Listeners, dep_id, was_serving
from llmd.core.generation import apply_defaults, build_prompt, fit_context
from llmd.core.metrics import Metrics
from llmd.core.sessions import ChatSessions
from llmd.core.registry import Model, Registry
from llmd.core.tasks import TaskTracker
from llmd.core.types import DeploymentState, EmbeddingResult, FinishReason, GenerateRequest
from llmd.errors import LlmdError, ModelNotLoadedError, ShuttingDownError, ValidationError
from llmd.store import Store

log = logging.getLogger(__name__)

StatusHook = Callable[[str], None]


class Core(Fleet):
    """Registry, deployments and the generation pipeline, over one store.

    The deployment lifecycle (start, stop, restore, placement, keep-alive,
    ports) lives in :class:`llmd.core.fleet.Fleet`.
    """

    def __init__(self, config: Config, store: Store, engine: Engine, *,
                 on_status: StatusHook | None = None) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        self.registry = Registry(store)
        self.deployments: dict[str, Deployment] = {}
        self.started_at = time.time()
        self.shutting_down = False
        self.active_streams = 0  # open SSE responses and WebSockets, kept by the HTTP layer
        self._on_status = on_status or (lambda _msg: None)
        self._tasks: set[asyncio.Task] = set()
        self.metrics = Metrics()
        self.sessions = ChatSessions(self)
        self.events = EventBroker()
        self.tasks = TaskTracker(self.events)
        self.downloads = DownloadManager(self)  # hub search (self.downloads.hub) and download tasks
        # Port-bound OpenAI listeners (set by the daemon; None: ports cannot be served).
        self.listeners: Listeners | None = None
        self._ports: dict[int, str] = {}  # port -> model name
        self._ids: dict[str, str] = {}  # deployment id -> model name
        self._logs: dict[str, ModelLog] = {}
        # One placement decision at a time: two starts must not both see the same free memory.
        self._place_lock = asyncio.Lock()
        self._idle_task: asyncio.Task | None = None
        self._to_restore: list[dict[str, Any]] = []  # rows that Core.restore_deployments starts again
        self.auth = Auth(config, store)  # credentials, the request's principal, per-client stream counts

    # -- lifecycle ------------------------------------------------------
    async def start(self) -> None:
        """Register bundled models, recover state, and load the default model in the background."""
        self.events.bind(asyncio.get_running_loop())
        if self.config.models.discover_bundled:
            await self.registry.sync_bundled()
        await self.registry.ensure_default_alias(self.config.models.default)
        rows = await self.store.deployments.list()
        restore = [r for r in rows if was_serving(r)] if self.config.deployments.restore else []
        # Deployments that were starting or running when the daemon died are
        # not running now; record that truthfully before anything else.
        await self.store.deployments.mark_all(("pending", "starting", "running", "stopping"), "stopped")
        for row in rows:
            self._ids[dep_id(row["id"])] = row["model"]
        await self.downloads.start()  # finish interrupted registrations, resume interrupted downloads
        if self.config.models.load_default:
            model = await self.registry.find(self.config.models.default)
            if model is None:
                log.warning("default model '%s' is not registered; nothing is loaded", self.config.models.default)
                self._on_status(f"default model {self.config.models.default} not found")
            else:
                try:
                    await self.start_deployment(model.name, wait=False)
                except LlmdError as exc:
                    log.error("the default model %s cannot start: %s", model.name, exc.message)
                    self._on_status(f"default model {model.name} cannot start: {exc.message}")
        self._to_restore = restore
        self._idle_task = asyncio.ensure_future(self._idle_loop())

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def shutdown(self) -> None:
        """Stop taking work, end open generations with a final event, unload models."""
        self.shutting_down = True
        if self._idle_task is not None:
            self._idle_task.cancel()
        await self.tasks.shutdown()
        await self.downloads.shutdown()  # partial files stay; the tasks resume on the next start
        for d in self.deployments.values():
            if d.state in LIVE:
                d.stop_reason = "shutdown"
        await asyncio.gather(*(d.stop(FinishReason.SHUTDOWN) for d in list(self.deployments.values())))
        for port in list(self._ports):
            await self._release_port(port)
        # Let request-log and state writes that the stops queued finish.
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)

    # -- models ---------------------------------------------------------
    async def resolve(self, name: str | None) -> Model:
        """The model a request names, or the default model when it names none."""
        if name is None or name == "":
            name = self.config.models.default
        model = await self.registry.get(name)
        self.auth.check_model(model)  # a key limited to other models gets a 403 here
        return model

    async def deployment_for(self, name: str | None) -> Deployment:
        """The deployment serving ``name``; waits for a load in progress up to ``engine.load_wait_s``."""
        if self.shutting_down:
            raise ShuttingDownError()
        model = await self.resolve(name)
        dep = self.deployments.get(model.name)
        if dep is None:
            raise ModelNotLoadedError(
                f"model '{model.name}' is not loaded", details={"model": model.name, "state": "stopped"})
        if dep.state in (DeploymentState.PENDING, DeploymentState.STARTING):
            await dep.wait_loaded(self.config.engine.load_wait_s)
        dep.require_running()
        return dep

    async def list_models(self) -> list[dict[str, Any]]:
        """Registered models with their deployment state."""
        out = []
        for m in await self.registry.list():
            d = m.to_dict()
            dep = self.deployments.get(m.name)
            d["state"] = dep.state.value if dep else DeploymentState.STOPPED.value
            d["loaded"] = dep is not None and dep.state is DeploymentState.RUNNING
            out.append(d)
        return out

    async def add_model(self, path: str, name: str | None = None) -> Model:
        """Register a local GGUF file."""
        return await self.registry.add_file(path, name)

    # -- inference ------------------------------------------------------
    async def generate(self, req: GenerateRequest) -> Generation:
        """Validate, tokenize and queue a generation; errors surface here, before any streaming."""
        dep = await self.deployment_for(req.model)
        return await self.generate_on(dep, req)

    async def generate_on(self, dep: Any, req: GenerateRequest) -> Generation:
        """:meth:`generate` on a given deployment (seed 004 addresses deployments by id)."""
        self.auth.check_model(dep.model)  # whichever way the deployment was found
        dep.last_used = time.time()
        req = dataclasses.replace(req, params=self._model_defaults(dep.model, req.params))
        if getattr(dep, "external", False):
            return await dep.generate(req)
        loaded = dep.require_running()
        loop = asyncio.get_running_loop()
        prompt = await loop.run_in_executor(dep.aux, build_prompt, loaded, req)
        if req.params.grammar:
            # A grammar that does not parse is a 400 now, not an error event mid-stream.
            await loop.run_in_executor(dep.aux, loaded.check_grammar, req.params.grammar)
        params = apply_defaults(req.params, self.config.sampling)
        own_max = (getattr(dep.model, "config", None) or {}).get("max_tokens")
        default_max = own_max if isinstance(own_max, int) and not isinstance(own_max, bool) and own_max > 0 \
            else self.config.sampling.max_tokens
        params = fit_context(len(prompt), params, loaded.n_ctx, default_max, self.config.limits.max_tokens)
        return dep.submit(prompt, params, meta={"dialect": req.dialect, "endpoint": req.endpoint})

    @staticmethod
    def _model_defaults(model: Model, params: Any) -> Any:
        """Fill sampling fields the request left out from the model's own config ([sampling] comes after)."""
        cfg = getattr(model, "config", None) or {}
        fill = {}
        for key in ("temperature", "top_p", "top_k", "repeat_penalty"):
            value = cfg.get(key)
            if getattr(params, key) is None and isinstance(value, (int, float)) and not isinstance(value, bool):
                fill[key] = int(value) if key == "top_k" else float(value)
        return dataclasses.replace(params, **fill) if fill else params

    async def embed(self, model: str | None, inputs: Sequence[str]) -> EmbeddingResult:
        """Embeddings of ``inputs`` with ``model``."""
        if not inputs:
            raise ValidationError("input must not be empty", field="input")
        if any(not text for text in inputs):  # llama.cpp fails to decode an empty sequence
            raise ValidationError("input must not contain an empty string", field="input")
        dep = await self.deployment_for(model)
        dep.last_used = time.time()
        if getattr(dep, "external", False):
            return await dep.embed(list(inputs))
        loaded = dep.require_running()
        loop = asyncio.get_running_loop()
        for text in inputs:
            if len(await loop.run_in_executor(dep.aux, loaded.tokenize, text)) > loaded.n_ctx:
                raise ValidationError(f"an input is longer than the context ({loaded.n_ctx} tokens)", field="input")
        vectors, n_tokens = await loop.run_in_executor(dep.aux, loaded.embed, list(inputs))
        return EmbeddingResult(vectors=vectors, prompt_tokens=n_tokens, model=dep.model.name)

    # -- status ---------------------------------------------------------
    def default_deployment(self) -> Deployment | None:
        """The deployment of the default model, if any."""
        return self.deployments.get(self.config.models.default)

    async def health(self) -> dict[str, Any]:
        """Health in core terms: the store, the default model, queues."""
        dep = self.default_deployment()
        loaded = dep is not None and dep.state is DeploymentState.RUNNING
        store_ok = await self.store.check()
        if self.shutting_down:
            status = "error"
        elif not store_ok or (dep is not None and dep.state is DeploymentState.ERROR):
            status = "error"
        elif not loaded:
            status = "model_not_loaded"
        else:
            status = "ok"
        return {
            "status": status,
            "model_loaded": loaded,
            "default_model": self.config.models.default,
            "store": "ok" if store_ok else "error",
            "shutting_down": self.shutting_down,
            "uptime_s": round(time.time() - self.started_at, 3),
            "active_streams": self.active_streams,
            "deployments": [d.stats() for d in self.deployments.values()],
            "auth": self.auth.describe(),
        }

    async def status(self) -> dict[str, Any]:
        """Everything ``llmctl status`` shows."""
        proc = psutil.Process()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "engine": self.engine.name,
            "health": await self.health(),
            "memory_rss_bytes": proc.memory_info().rss,
            "requests": await self.store.requests.totals(),
            "state_dir": str(self.config.state_dir),
            "socket": str(self.config.socket_path) if self.config.socket_path else None,
            "listen": f"{self.config.server.host}:{self.config.server.port}",
        }
