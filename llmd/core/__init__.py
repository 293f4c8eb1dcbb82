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
from llmd.core.deployments import Deployment, Generation, Job
from llmd.core.engine.base import Engine, LoadSettings
from llmd.core.events import EventBroker
from llmd.core.generation import apply_defaults, build_prompt, fit_context
from llmd.core.metrics import Metrics
from llmd.core.sessions import ChatSessions
from llmd.core.registry import Model, Registry
from llmd.core.tasks import TaskTracker
from llmd.core.types import (
    DeploymentState, EmbeddingResult, FinishReason, GenerateRequest, GenerationResult,
)
from llmd.errors import EngineError, ModelNotLoadedError, ShuttingDownError, ValidationError
from llmd.store import Store

log = logging.getLogger(__name__)

StatusHook = Callable[[str], None]


class Core:
    """Registry, deployments and the generation pipeline, over one store."""

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

    # -- lifecycle ------------------------------------------------------
    async def start(self) -> None:
        """Register bundled models, recover state, and load the default model in the background."""
        self.events.bind(asyncio.get_running_loop())
        if self.config.models.discover_bundled:
            await self.registry.sync_bundled()
        await self.registry.ensure_default_alias(self.config.models.default)
        # Deployments that were starting or running when the daemon died are
        # not running now; record that truthfully before anything else.
        await self.store.deployments.mark_all(("pending", "starting", "running", "stopping"), "stopped")
        if self.config.models.load_default:
            model = await self.registry.find(self.config.models.default)
            if model is None:
                log.warning("default model '%s' is not registered; nothing is loaded", self.config.models.default)
                self._on_status(f"default model {self.config.models.default} not found")
            else:
                dep = self._new_deployment(model)
                self._spawn(self._start_deployment(dep))

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def load_settings(self, model: Model) -> LoadSettings:
        """Runtime settings for ``model`` from the engine config."""
        e = self.config.engine
        n_ctx = e.n_ctx or model.context_length or 4096
        if model.context_length:
            n_ctx = min(n_ctx, model.context_length)
        threads = e.n_threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1
        return LoadSettings(n_ctx=n_ctx, n_threads=threads, n_batch=e.n_batch, n_gpu_layers=e.n_gpu_layers,
                            n_slots=e.parallel, kv_unified=e.kv_unified)

    def _new_deployment(self, model: Model) -> Deployment:
        dep = Deployment(model, self.load_settings(model), self.engine,
                         queue_size=self.config.engine.queue_size, prefill_chunk=self.config.engine.prefill_chunk,
                         on_finish=self._record_request, on_state=self._state_changed)
        self.deployments[model.name] = dep
        return dep

    async def _start_deployment(self, dep: Deployment) -> Deployment:
        name = dep.model.name
        self._on_status(f"loading model {name}")
        await dep.start()
        if dep.state is DeploymentState.RUNNING:
            self._on_status(f"serving {name}")
        else:
            self._on_status(f"model {name} failed to load: {dep.error}")
        return dep

    async def deploy(self, model: Model) -> Deployment:
        """Load ``model`` into the engine (returns once loaded or failed)."""
        if self.shutting_down:
            raise ShuttingDownError()
        existing = self.deployments.get(model.name)
        if existing and existing.state in (DeploymentState.PENDING, DeploymentState.STARTING,
                                           DeploymentState.RUNNING):
            await existing.wait_loaded(3600)
            return existing
        return await self._start_deployment(self._new_deployment(model))

    async def load_model(self, name: str | None, *, n_gpu_layers: int | None = None) -> Deployment:
        """Load a registered model (by name or alias) and wait for the load to finish.

        Loading an already running model with the same settings is a no-op;
        different settings reload it. A failed load is reported as the
        deployment's ``error`` state, and raised as :class:`EngineError`.
        """
        if self.shutting_down:
            raise ShuttingDownError()
        model = await self.resolve(name)
        settings = self.load_settings(model)
        if n_gpu_layers is not None:
            settings = dataclasses.replace(settings, n_gpu_layers=n_gpu_layers)
        existing = self.deployments.get(model.name)
        if existing is not None:
            if existing.state in (DeploymentState.PENDING, DeploymentState.STARTING):
                await existing.wait_loaded(3600)
            if existing.state is DeploymentState.RUNNING and existing.settings == settings:
                return existing
            await self.unload_model(model.name)
        dep = self._new_deployment(model)
        dep.settings = settings
        await self._start_deployment(dep)
        if dep.state is not DeploymentState.RUNNING:
            raise EngineError(f"model '{model.name}' failed to load: {dep.error}",
                              details={"model": model.name, "state": dep.state.value})
        return dep

    async def unload_model(self, name: str | None) -> bool:
        """Stop a model's deployment and free its memory; False if it was not loaded."""
        model = await self.resolve(name)
        dep = self.deployments.pop(model.name, None)
        if dep is None:
            return False
        await dep.stop(FinishReason.SHUTDOWN, f"model '{model.name}' was unloaded")
        self._on_status(f"unloaded {model.name}")
        return True

    def _state_changed(self, dep: Deployment) -> None:
        self._spawn(self.store.deployments.upsert(
            dep.model.name, dep.state.value, dep.settings.to_dict(), dep.error))

    def _record_request(self, job: Job, result: GenerationResult) -> None:
        meta = job.meta
        self.metrics.observe_request(meta, result)
        status = result.finish_reason.status
        self._spawn(self.store.requests.add(
            dialect=meta.get("dialect", "core"), endpoint=meta.get("endpoint", ""), model=result.model,
            prompt_tokens=result.usage.prompt_tokens, completion_tokens=result.usage.completion_tokens,
            ttft_ms=result.timings.ttft_s * 1000 if result.usage.completion_tokens else None,
            duration_ms=result.timings.duration_s * 1000, status=status,
            error=result.error.message if result.error is not None else None,
        ))

    async def shutdown(self) -> None:
        """Stop taking work, end open generations with a final event, unload models."""
        self.shutting_down = True
        await self.tasks.shutdown()
        await asyncio.gather(*(d.stop(FinishReason.SHUTDOWN) for d in list(self.deployments.values())))
        # Let request-log and state writes that the stops queued finish.
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)

    # -- models ---------------------------------------------------------
    async def resolve(self, name: str | None) -> Model:
        """The model a request names, or the default model when it names none."""
        if name is None or name == "":
            name = self.config.models.default
        return await self.registry.get(name)

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
        loaded = dep.require_running()
        loop = asyncio.get_running_loop()
        prompt = await loop.run_in_executor(dep.aux, build_prompt, loaded, req)
        if req.params.grammar:
            # A grammar that does not parse is a 400 now, not an error event mid-stream.
            await loop.run_in_executor(dep.aux, loaded.check_grammar, req.params.grammar)
        params = apply_defaults(req.params, self.config.sampling)
        params = fit_context(len(prompt), params, loaded.n_ctx, self.config.sampling.max_tokens)
        return dep.submit(prompt, params, meta={"dialect": req.dialect, "endpoint": req.endpoint})

    async def embed(self, model: str | None, inputs: Sequence[str]) -> EmbeddingResult:
        """Embeddings of ``inputs`` with ``model``."""
        if not inputs:
            raise ValidationError("input must not be empty", field="input")
        dep = await self.deployment_for(model)
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
