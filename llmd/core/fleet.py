"""The fleet: one deployment per model, shared by every API; their lifecycle, placement and keep-alive.

:class:`Fleet` starts, stops, restarts, restores, evicts and unloads
deployments, binds their ports (through :class:`llmd.core.ports.PortMap`) and
records their state in the store. It resolves the model a request names
(the default model for none; a credential limited to other models gets a 403
here) and finds the deployment that serves it. Every dialect's "load",
"start", "deploy" and "unload" ends up in one of its methods.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import psutil

from llmd.config import KV_CACHE_TYPES, Config
from llmd.core import memory, placement, system
from llmd.core.auth import Auth
from llmd.core.background import Background
from llmd.core.deployment import Deployment, DeploymentInfo, FinishHook
from llmd.core.engine.base import Engine, LoadSettings
from llmd.core.events import EventBroker
from llmd.core.external import ExternalDeployment
from llmd.core.local import LocalDeployment
from llmd.core.modellog import LogEntry, ModelLogs
from llmd.core.ports import PortMap
from llmd.core.registry import Model, Registry
from llmd.core.types import DeploymentState, FinishReason
from llmd.errors import (
    ChatNotSupportedError,
    DeploymentNotFoundError,
    DeploymentNotRunningError,
    EngineError,
    InsufficientResourcesError,
    InvalidActionError,
    LlmdError,
    ModelLoadError,
    ModelNotLoadedError,
    OperationTimeoutError,
    ShuttingDownError,
    ValidationError,
)

log = logging.getLogger("llmd.core")

# Deployment states that hold (or are about to hold) memory.
LIVE = (DeploymentState.PENDING, DeploymentState.STARTING, DeploymentState.RUNNING)
# Keys of ``Fleet.start(settings=...)``.
SETTING_KEYS = ("n_ctx", "max_model_len", "n_threads", "n_gpu_layers", "n_batch", "parallel", "kv_unified",
                "kv_cache_type", "gpu_memory_utilization")
_FOREVER = 10 * 365 * 86400.0
AUTO_GPU_LAYERS = -2  # engine.n_gpu_layers: decide per start from the GPU's free memory
HEALTH_FAILURES = 3  # failed health checks in a row that put a running deployment in error
StatusHook = Callable[[str], None]


def was_serving(row: dict[str, Any]) -> bool:
    """Whether a stored deployment served when the daemon last stopped (cleanly or not).

    A row still "starting" is left out on purpose: a load that took the
    daemon down with it must not be retried at every start.
    """
    return row["state"] == "running" or (row["state"] == "stopped" and row.get("stop_reason") == "shutdown")


def dep_id(row_id: int) -> str:
    """The public id of deployment row ``row_id``."""
    return f"deploy_{row_id}"


def usable_threads(n: int) -> int:
    """``n`` engine threads, at most one per logical CPU: llama.cpp's threads spin at every barrier, so
    more threads than CPUs only take turns (a start with 1024 threads on a 2-core box stalls the box)."""
    cpus = os.cpu_count() or 1
    if n > cpus:
        log.warning("n_threads %d is more than the %d CPUs of this machine; using %d", n, cpus, cpus)
    return max(1, min(n, cpus))


def _row_id(deployment_id: str) -> int | None:
    digits = deployment_id[7:]
    # isascii: "²" is a digit to str.isdigit but not to int()
    if deployment_id.startswith("deploy_") and digits.isascii() and digits.isdigit() and len(deployment_id) < 27:
        return int(digits)
    return None


@dataclass(frozen=True)
class LoadResult:
    """The outcome of a load: the deployment, and whether a wish for the GPU could be met."""

    deployment: DeploymentInfo
    quantization: str | None
    gpu_available: bool
    prefer_gpu: bool | None = None


@dataclass(frozen=True)
class Unloaded:
    """The outcome of an unload."""

    model: str
    was_loaded: bool


@dataclass(frozen=True)
class Runtime:
    """What a loaded model runs with: its file, context, offload, device and sampling defaults."""

    model: Model
    n_ctx: int
    n_gpu_layers: int
    device: str | None
    sampling: dict[str, Any]  # the effective defaults: temperature, top_p, top_k, repeat_penalty, max_tokens


@dataclass(frozen=True)
class DeploymentHealth:
    """A deployment's health verdict: healthy, busy (its queue is full) or unhealthy."""

    info: DeploymentInfo
    verdict: str
    uptime_s: float | None
    checked_at: float


class Fleet:
    """Deployments, one per model: lifecycle, placement within the memory budget, ports, keep-alive."""

    def __init__(self, config: Config, engine: Engine, registry: Registry, repo: Any, *, auth: Auth,
                 logs: ModelLogs, events: EventBroker, background: Background, on_finish: FinishHook,
                 on_status: StatusHook | None = None) -> None:
        self.config = config
        self.engine = engine
        self.registry = registry
        self.repo = repo  # llmd.store.deployments.DeploymentRepo
        self.auth = auth
        self.logs = logs
        self.events = events
        self.background = background
        self.ports = PortMap(config.server.port, logs.write)
        self._on_finish = on_finish
        self._on_status = on_status or (lambda _msg: None)
        self._deployments: dict[str, Deployment] = {}  # model name -> its live deployment
        self._ids: dict[str, str] = {}  # deployment id -> model name
        # One placement decision at a time: two starts must not both see the same free memory.
        self._place_lock = asyncio.Lock()
        self._idle_task: asyncio.Task | None = None
        self._idle_wake = asyncio.Event()  # a request set a deployment's own keep-alive: look again now
        # Deployments started by a request for their model (load on demand): requests wait for their load
        # up to deployments.load_on_demand_wait_s rather than engine.load_wait_s.
        self._on_demand: weakref.WeakSet[Deployment] = weakref.WeakSet()
        self._health_task: asyncio.Task | None = None
        self._to_restore: list[dict[str, Any]] = []

    # -- lifecycle of the fleet -------------------------------------------------
    async def start(self) -> None:
        """Record truthfully that nothing runs, load the default model, start the keep-alive loop.

        The deployments that served when the daemon last stopped are remembered
        for :meth:`restore`, which the daemon calls once it can serve their ports.
        """
        rows = await self.repo.list()
        self._to_restore = [r for r in rows if was_serving(r)] if self.config.deployments.restore else []
        # Deployments that were starting or running when the daemon died are not running now.
        await self.repo.mark_all(("pending", "starting", "running", "stopping"), "stopped")
        for row in rows:
            self._ids[dep_id(row["id"])] = row["model"]
        if self.config.models.load_default:
            model = await self.registry.find(self.config.models.default)
            if model is None:
                log.warning("default model '%s' is not registered; nothing is loaded", self.config.models.default)
                self._on_status(f"default model {self.config.models.default} not found")
            else:
                try:
                    await self.start_model(model.name, wait=False)
                except LlmdError as exc:
                    log.error("the default model %s cannot start: %s", model.name, exc.message)
                    self._on_status(f"default model {model.name} cannot start: {exc.message}")
        self._idle_task = asyncio.ensure_future(self._idle_loop())
        self._health_task = asyncio.ensure_future(self._health_loop())

    async def restore(self) -> None:
        """Start again the deployments that served when the daemon last stopped (``deployments.restore``).

        Each comes back with the settings, port and pin it had, except that the
        default model keeps the settings of the current config (it may already
        be loading through ``models.load_default``; then only its port and pin
        are put back). A restore that cannot happen (the port is taken, the
        budget is short) is logged in the deployment's log and does not stop
        the daemon.
        """
        rows, self._to_restore = self._to_restore, []
        for row in rows:
            await self._restore(row)

    async def _restore(self, row: dict[str, Any]) -> None:
        name = row["model"]
        default = await self.registry.find(self.config.models.default)
        settings: dict[str, Any] | None = None
        if default is None or default.name != name:
            settings = dict(row.get("settings") or {})
            if row.get("gpu_memory_utilization") is not None:
                settings["gpu_memory_utilization"] = row["gpu_memory_utilization"]
        self.logs.write(name, "info", "restoring: it was serving when the daemon last stopped")
        try:
            await self.start_model(name, settings=settings, port=row.get("port"), pinned=bool(row.get("pinned")),
                                   wait=False, model_source=row.get("model_source"))
            log.info("restoring the deployment of %s", name)
        except LlmdError as exc:
            self.logs.write(name, "error", f"not restored: {exc.message}")
            log.warning("the deployment of %s was not restored: %s", name, exc.message)
        except Exception:  # noqa: BLE001 - one bad record must not keep the daemon from starting
            self.logs.write(name, "error", "not restored: internal error; see the daemon's log")
            log.exception("restoring the deployment of %s failed", name)

    async def shutdown(self) -> None:
        """End open generations with a final event, unload every model, stop serving extra ports."""
        for task in (self._idle_task, self._health_task):
            if task is not None:
                task.cancel()
        for d in self._deployments.values():
            if d.state in LIVE:
                d.stop_reason = "shutdown"
        await asyncio.gather(*(d.stop(FinishReason.SHUTDOWN) for d in list(self._deployments.values())))
        for port in self.ports.bound():
            await self.ports.release(port)

    # -- finding deployments ----------------------------------------------------
    async def resolve(self, name: str | None) -> Model:
        """The model a request names (name, alias or ``model-<n>``), or the default model for none.

        A credential limited to other models gets a 403 here.
        """
        model = await self.registry.get(name or self.config.models.default)
        self.auth.check_model(model)
        return model

    def get(self, name: str) -> Deployment | None:
        """The live deployment of model ``name`` (its registry name), if any."""
        return self._deployments.get(name)

    def live(self) -> list[Deployment]:
        """Every deployment in memory now (in any state)."""
        return list(self._deployments.values())

    def default(self) -> Deployment | None:
        """The deployment of the default model, if any."""
        return self._deployments.get(self.config.models.default)

    def state_of(self, name: str) -> DeploymentState:
        """The state of model ``name``'s deployment: ``stopped`` without a live one."""
        dep = self._deployments.get(name)
        return dep.state if dep is not None else DeploymentState.STOPPED

    async def serving(self, name: str | None) -> Deployment:
        """The running deployment of ``name``, loading it on demand when nothing serves it.

        A registered model with no live deployment is started here
        (``deployments.load_on_demand``; placement evicts idle deployments as
        any start does, and a start that cannot fit raises its 503). A load in
        progress is waited for up to ``engine.load_wait_s``, or up to
        ``deployments.load_on_demand_wait_s`` for a load a request started;
        past the bound the request gets a 503 with ``Retry-After`` and the
        load goes on. A deployment whose load failed (``error``) is not
        retried on demand: its error is the answer until it is started again.
        """
        if self.background.stopping:
            raise ShuttingDownError()
        model = await self.resolve(name)
        dep = self._deployments.get(model.name)
        demand = self.config.deployments.load_on_demand
        if demand and (dep is None or dep.state is DeploymentState.STOPPED):
            dep = await self.start_model(model.name, wait=False)
            if dep.state in (DeploymentState.PENDING, DeploymentState.STARTING):
                self._on_demand.add(dep)
                dep.log("info", "loading on demand: a request named the model")
        if dep is None:
            raise ModelNotLoadedError(
                f"model '{model.name}' is not loaded", details={"model": model.name, "state": "stopped"})
        if dep.state in (DeploymentState.PENDING, DeploymentState.STARTING):
            bound = self.config.engine.load_wait_s
            if demand and dep in self._on_demand:
                bound = max(bound, self.config.deployments.load_on_demand_wait_s)
            await dep.wait_loaded(bound)
            if dep.state in (DeploymentState.PENDING, DeploymentState.STARTING) and bound > 0:
                raise ModelNotLoadedError(
                    f"model '{model.name}' is still loading after {bound:g}s; the load goes on, retry later",
                    retry_after=10, details={"model": model.name, "state": dep.state.value, "waited_s": bound})
        dep.check_running()
        return dep

    async def preload(self, name: str | None, keep_alive_s: float | None = None) -> Deployment:
        """Load model ``name`` as a request for it would (on demand, the same bounded wait) and set its
        keep-alive (Ollama's chat or generate with nothing to generate)."""
        dep = await self.serving(name)
        self.keep_alive(dep, keep_alive_s)
        return dep

    def keep_alive(self, dep: Deployment, seconds: float | None) -> None:
        """Give ``dep`` its own keep-alive (a request's ``keep_alive``), from the end of its last request.

        ``None`` leaves it as it is; a negative value keeps it loaded until it
        is stopped; 0 unloads it as soon as it is idle; otherwise it is
        unloaded after that many idle seconds instead of
        ``deployments.keep_alive_s``. Pinned deployments are never unloaded
        for idleness, whatever a request says.
        """
        if seconds is None:
            return
        # Beyond ten years is "for good": an expiry that far would not fit a date.
        dep.keep_alive_s = -1.0 if seconds > _FOREVER else float(seconds)
        dep.last_used = time.time()
        self._idle_wake.set()

    def expires_at(self, dep: Deployment) -> float | None:
        """When ``dep`` will be unloaded for idleness if no request comes (``None``: never)."""
        own, keep = dep.keep_alive_s, self.config.deployments.keep_alive_s
        if dep.pinned or (own is not None and own < 0) or (own is None and keep <= 0):
            return None
        return dep.last_used + (own if own is not None else keep)

    def by_id(self, deployment_id: str) -> Deployment:
        """The live deployment with id ``deploy_<n>``.

        Raises :class:`DeploymentNotFoundError` for an unknown id and
        :class:`DeploymentNotRunningError` for a known one that is stopped.
        """
        name = self._ids.get(deployment_id)
        if name is None:
            raise DeploymentNotFoundError(f"deployment '{deployment_id}' does not exist",
                                          field="deployment_id", details={"deployment_id": deployment_id})
        dep = self._deployments.get(name)
        if dep is None or dep.id != deployment_id:
            raise DeploymentNotRunningError(f"deployment '{deployment_id}' ({name}) is stopped",
                                            details={"deployment_id": deployment_id, "model": name,
                                                     "state": DeploymentState.STOPPED.value})
        self.auth.check_model(dep.model)  # a key limited to other models gets a 403 here
        return dep

    async def running_by_id(self, deployment_id: str, *, model: str | None = None,
                            chat: bool = False) -> Deployment:
        """The running deployment ``deployment_id`` to generate with.

        ``model``, when a body names one, must exist (an unknown one is named
        in a 404, as everywhere). A deployment that is not running is
        DEPLOYMENT_NOT_RUNNING; ``chat`` on a model without a chat template is
        CHAT_NOT_SUPPORTED.
        """
        if model:
            await self.resolve(model)
        dep = self.by_id(deployment_id)
        if dep.state is not DeploymentState.RUNNING:
            state = _public_state(dep.state)
            raise DeploymentNotRunningError(
                f"deployment '{deployment_id}' is {state}, not running",
                details={"deployment_id": deployment_id, "status": state, "error": dep.error})
        if chat and not dep.model.chat_template and dep.kind == "llama.cpp":
            raise ChatNotSupportedError(f"model '{dep.model.name}' has no chat template; use "
                                        f"/api/completions/{deployment_id}",
                                        details={"deployment_id": deployment_id, "model": dep.model.name})
        return dep

    async def runtime(self, name: str | None = None) -> Runtime:
        """What the running model ``name`` (the default for none) runs with; 503 until it is loaded."""
        dep = await self.serving(name)
        info = dep.info()
        return Runtime(model=dep.model, n_ctx=dep.n_ctx, n_gpu_layers=dep.n_gpu_layers, device=info.device,
                       sampling=self.sampling_defaults(dep.model))

    def sampling_defaults(self, model: Model) -> dict[str, Any]:
        """The sampling a request that names nothing gets: the model's own config, then [sampling]."""
        s = self.config.sampling
        out = {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k,
               "repeat_penalty": s.repeat_penalty, "max_tokens": s.max_tokens}
        for key in out:
            value = model.config.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = value
        return out

    # -- records ----------------------------------------------------------------
    async def record(self, deployment_id: str) -> DeploymentInfo:
        """A deployment in any state: the live figures, or the stored record of a stopped one."""
        row_id = _row_id(deployment_id)
        row = await self.repo.get(row_id) if row_id is not None and deployment_id in self._ids else None
        if row is None:
            self._ids.pop(deployment_id, None)
            raise DeploymentNotFoundError(f"deployment '{deployment_id}' does not exist",
                                          field="deployment_id", details={"deployment_id": deployment_id})
        return self._info(row)

    async def records(self, state: str | None = None) -> list[DeploymentInfo]:
        """Every deployment record (live figures where live), optionally only those in ``state``."""
        out = []
        for row in await self.repo.list():
            self._ids[dep_id(row["id"])] = row["model"]
            info = self._info(row)
            if state is None or _public_state(info.state) == state:
                out.append(info)
        return out

    def _info(self, row: dict[str, Any]) -> DeploymentInfo:
        dep = self._deployments.get(row["model"])
        rid = dep_id(row["id"])
        if dep is not None and dep.id == rid:
            return dataclasses.replace(dep.info(), updated_at=row.get("updated_at"),
                                       created_at=row.get("created_at") or dep.created_at)
        return DeploymentInfo(
            deployment_id=rid, model=row["model"], state=DeploymentState(row["state"]),
            error=row.get("error"), settings=row.get("settings") or {}, port=row.get("port"),
            pinned=bool(row.get("pinned")), memory_bytes=row.get("memory_bytes") or 0,
            model_source=row.get("model_source"), gpu_memory_utilization=row.get("gpu_memory_utilization"),
            created_at=row.get("created_at"), started_at=row.get("started_at"), stopped_at=row.get("stopped_at"),
            updated_at=row.get("updated_at"), last_used=row.get("last_used"), stop_reason=row.get("stop_reason"),
            note=row.get("note"), live=False)

    async def health_of(self, deployment_id: str) -> DeploymentHealth:
        """``healthy`` when running with room in its queue, ``busy`` when the queue is full, else ``unhealthy``."""
        info = await self.record(deployment_id)
        verdict = "busy" if info.queue_full else "healthy" if info.running else "unhealthy"
        uptime = round(time.time() - info.started_at, 1) if info.running and info.started_at else None
        return DeploymentHealth(info, verdict, uptime, time.time())

    async def model_of(self, deployment_id: str) -> tuple[DeploymentInfo, Model]:
        """A deployment and the registry entry of its model."""
        info = await self.record(deployment_id)
        return info, await self.resolve(info.model)

    async def logs_of(self, deployment_id: str, lines: int) -> tuple[DeploymentInfo, list[LogEntry]]:
        """The deployment and the last ``lines`` lines of its model's log."""
        info = await self.record(deployment_id)
        return info, await self.logs.tail(info.model, lines)

    async def follow_logs_of(self, deployment_id: str, lines: int, heartbeat_s: float) -> Any:
        """The deployment's model's log, followed (see :meth:`ModelLogs.follow`); the id is checked first."""
        info = await self.record(deployment_id)
        return self.logs.follow(info.model, lines, heartbeat_s)

    # -- settings ---------------------------------------------------------------
    def load_settings(self, model: Model) -> LoadSettings:
        """Runtime settings for ``model``: the model's own config first, then the engine config."""
        e = self.config.engine
        cfg = model.config

        def own(key: str) -> int | None:
            value = cfg.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        n_ctx = own("n_ctx") or e.n_ctx or model.context_length or 4096
        if model.context_length:
            n_ctx = min(n_ctx, model.context_length)
        threads = own("n_threads") or e.n_threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1
        gpu_layers = own("n_gpu_layers")
        return LoadSettings(n_ctx=n_ctx, n_threads=usable_threads(threads), n_batch=e.n_batch,
                            n_gpu_layers=e.n_gpu_layers if gpu_layers is None else gpu_layers,
                            n_slots=e.parallel, kv_unified=e.kv_unified,
                            kv_cache_type=cfg.get("kv_cache_type") if cfg.get("kv_cache_type") in KV_CACHE_TYPES
                            else e.kv_cache_type)

    def _settings_for(self, model: Model, settings: dict[str, Any] | None) -> tuple[LoadSettings, float | None]:
        """LoadSettings from a start's settings dict, and the recorded gpu_memory_utilization."""
        s = {k: v for k, v in (settings or {}).items() if v is not None}
        unknown = sorted(set(s) - set(SETTING_KEYS))
        if unknown:
            raise ValidationError(f"unknown deployment setting '{unknown[0]}'", field=unknown[0])
        base = self.load_settings(model)

        def integer(key: str, low: int, high: int) -> int | None:
            if key not in s:
                return None
            v = s[key]
            if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
                raise ValidationError(f"{key} must be an integer from {low} to {high}", field=key)
            return v

        n_ctx = integer("n_ctx", 16, 1 << 20)
        max_len = integer("max_model_len", 16, 1 << 20)
        if n_ctx is None:
            n_ctx = max_len
        if n_ctx is not None and model.context_length and n_ctx > model.context_length:
            key = "n_ctx" if "n_ctx" in s else "max_model_len"
            raise ValidationError(
                f"{key}: {n_ctx} exceeds the model's training context of {model.context_length} tokens",
                field=key, details={key: n_ctx, "context_length": model.context_length})
        util = s.get("gpu_memory_utilization")
        if util is not None and (isinstance(util, bool) or not isinstance(util, (int, float)) or not 0 < util <= 1):
            raise ValidationError("gpu_memory_utilization must be a number in (0, 1]", field="gpu_memory_utilization")
        gpu_layers = integer("n_gpu_layers", -1, 100000)
        if gpu_layers is None and util is not None and self.has_gpu():
            gpu_layers = -1  # a share of the GPU asked for: offload every layer (llama.cpp has no finer knob)
        kv = s.get("kv_unified")
        if kv is not None and not isinstance(kv, bool):
            raise ValidationError("kv_unified must be a boolean", field="kv_unified")
        kv_type = s.get("kv_cache_type")
        if kv_type is not None and kv_type not in KV_CACHE_TYPES:
            raise ValidationError(f"kv_cache_type must be one of {', '.join(KV_CACHE_TYPES)}", field="kv_cache_type")
        out = dataclasses.replace(
            base,
            n_ctx=n_ctx if n_ctx is not None else base.n_ctx,
            n_threads=usable_threads(integer("n_threads", 1, 1024) or base.n_threads),
            n_batch=integer("n_batch", 1, 1 << 16) or base.n_batch,
            n_gpu_layers=base.n_gpu_layers if gpu_layers is None else gpu_layers,
            n_slots=integer("parallel", 1, 256) or base.n_slots,
            kv_unified=base.kv_unified if kv is None else kv,
            kv_cache_type=base.kv_cache_type if kv_type is None else kv_type,
        )
        return out, (float(util) if util is not None else None)

    async def _resolve_gpu(self, model: Model, load: LoadSettings, needed: int) -> LoadSettings:
        """``n_gpu_layers`` AUTO_GPU_LAYERS (the default): every layer on the GPU when the engine is a GPU
        build, a GPU is there, and one GPU's free memory holds the model's estimate (weights and KV cache)
        with a tenth to spare; else none. A number set in the config or the start is used as it is."""
        if load.n_gpu_layers != AUTO_GPU_LAYERS:
            return load
        layers, why = 0, "the engine is a CPU build"
        if self.has_gpu():
            gpus = await asyncio.to_thread(system.gpus)
            free = max((g.memory_free_bytes for g in gpus.devices), default=0)
            if not gpus.devices:
                why = gpus.reason or "no GPU"
            elif free >= needed * 1.1:
                layers, why = -1, f"{free / memory.MIB:.0f} MiB free on the GPU for {needed / memory.MIB:.0f}"
            else:
                why = f"only {free / memory.MIB:.0f} MiB free on the GPU for {needed / memory.MIB:.0f} MiB"
        self.logs.write(model.name, "info", f"n_gpu_layers auto: {'all layers on the GPU' if layers else 'CPU'} "
                                            f"({why})")
        return dataclasses.replace(load, n_gpu_layers=layers)

    def has_gpu(self) -> bool:
        """Whether the engine can offload layers to a GPU (answered once by the engine)."""
        try:
            return bool(self.engine.supports_gpu())
        except Exception:  # noqa: BLE001 - no answer means no GPU
            return False

    # -- starting ---------------------------------------------------------------
    def _new_deployment(self, model: Model, settings: LoadSettings) -> Deployment:
        sink = functools.partial(self.logs.write, model.name)
        dep: Deployment
        if model.framework == "vllm":
            dep = ExternalDeployment(model, settings, self.config, on_state=self._state_changed,
                                     on_finish=self._on_finish, log_sink=sink)
        else:
            dep = LocalDeployment(model, settings, self.engine, queue_size=self.config.engine.queue_size,
                                  sampling=self.config.sampling, max_tokens_limit=self.config.limits.max_tokens,
                                  prefill_chunk=self.config.engine.prefill_chunk,
                                  draft_tokens=self.config.engine.ngram_draft_tokens, on_state=self._state_changed,
                                  on_finish=self._on_finish, log_sink=sink)
        self._deployments[model.name] = dep
        return dep

    async def _run_start(self, dep: Deployment) -> Deployment:
        name = dep.model.name
        self._on_status(f"loading model {name}")
        await dep.start()
        if dep.state is DeploymentState.RUNNING:
            dep.last_used = time.time()
            self._on_status(f"serving {name}")
        else:
            self._on_status(f"model {name} failed to load: {dep.error}")
            if dep.state is DeploymentState.ERROR and dep.port is not None:
                await self.ports.release(dep.port)
        return dep

    async def start_model(self, name: str | None, *, settings: dict[str, Any] | None = None,
                          port: int | None = None, pinned: bool | None = None, wait: bool = True,
                          timeout: float | None = None, model_source: str | None = None) -> Deployment:
        """Start (load) the deployment of model ``name``, or return the running one.

        Running with equal settings: returned as is (``pinned`` and ``port``
        updated when given); different settings: restarted. When the memory
        budget is short, the least recently used idle unpinned deployments are
        evicted first; when that cannot free enough, nothing is evicted and
        :class:`InsufficientResourcesError` carries the figures. With
        ``wait``, returns once loaded or failed (a failed load is the
        deployment's ``error`` state); ``timeout`` expired raises
        :class:`OperationTimeoutError` while the load goes on.
        """
        if self.background.stopping:
            raise ShuttingDownError()
        model = await self.resolve(name)
        load, util = self._settings_for(model, settings)
        if port is not None and not 1 <= port <= 65535:
            raise ValidationError("port must be 1-65535", field="port")
        async with self._place_lock:
            existing = self._deployments.get(model.name)
            # auto GPU layers asked again: whatever the running deployment resolved them to is "the same"
            same = existing is not None and existing.settings == (
                dataclasses.replace(load, n_gpu_layers=existing.settings.n_gpu_layers)
                if load.n_gpu_layers == AUTO_GPU_LAYERS else load)
            if existing is not None and existing.state in LIVE and same:
                await self._update_running(existing, port, pinned, util, model_source)
                dep, created = existing, False
            else:
                dep = await self._replace(model, existing, load, util, port, pinned, model_source)
                created = True
        if created:
            self.background.spawn(self._run_start(dep))
        if wait:
            await self._wait_loaded(dep, timeout)
        return dep

    async def _update_running(self, dep: Deployment, port: int | None, pinned: bool | None, util: float | None,
                              model_source: str | None) -> None:
        """A start that asks for what already runs: only its pin, port and labels change."""
        if pinned is not None and pinned != dep.pinned:
            dep.pinned = pinned
            dep.log("info", "pinned" if pinned else "unpinned")
        if port is not None and port != dep.port:
            await self.ports.bind(port, dep.model.name)
            if dep.port is not None:
                await self.ports.release(dep.port)
            dep.port = port
        if util is not None:
            dep.gpu_memory_utilization = util
        if model_source:
            dep.model_source = model_source
        await self._persist(dep)

    async def _replace(self, model: Model, existing: Deployment | None, load: LoadSettings, util: float | None,
                       port: int | None, pinned: bool | None, model_source: str | None) -> Deployment:
        """Plan, evict, stop the old deployment of the model (if any) and create the new one (not started)."""
        keep_port = existing.port if existing is not None else None
        if existing is not None:
            pinned = existing.pinned if pinned is None else pinned
            port = existing.port if port is None else port
        # Everything that can refuse the start comes before anything is stopped.
        plan = await self._plan(model, load)
        load = await self._resolve_gpu(model, load, plan.needed)
        fresh_port = port is not None and port != keep_port
        if fresh_port:
            await self.ports.bind(port, model.name)  # type: ignore[arg-type]
        try:
            if existing is not None:
                if existing.state in LIVE:
                    existing.log("info", "restarting with new settings")
                await self._stop_dep(existing, "restart", "restarting with new settings",
                                     release_port=port != keep_port)
            for victim in plan.evict:
                await self._evict(victim, model.name, plan)
            return await self._create(model, load, util, port, pinned, model_source, plan.estimate)
        except BaseException:
            if fresh_port and port is not None:
                await self.ports.release(port)
            raise

    async def _wait_loaded(self, dep: Deployment, timeout: float | None) -> None:
        await dep.wait_loaded(_FOREVER if timeout is None else timeout)
        if dep.state in (DeploymentState.PENDING, DeploymentState.STARTING):
            raise OperationTimeoutError(
                f"model '{dep.model.name}' is still loading after {timeout:g}s; the load goes on",
                details={"deployment_id": dep.id, "model": dep.model.name, "state": dep.state.value,
                         "timeout": timeout})

    async def _plan(self, model: Model, load: LoadSettings) -> placement.Plan:
        """Will ``model`` fit the budget (after evictions)? InsufficientResourcesError with the figures if not."""
        est = await self._estimate(model, load)
        live = [d for d in self._deployments.values() if d.state in LIVE and d.model.name != model.name]
        gpu_totals = []
        if est.gpu and self.has_gpu():
            gpus = await asyncio.to_thread(system.gpus)
            gpu_totals = [g.memory_total_bytes for g in gpus.devices if g.memory_total_bytes]
        budget = memory.budget(self.config.deployments.memory_budget_mb, gpu_totals=gpu_totals)

        def measure() -> placement.Plan:  # reads /proc (external engines' trees): off the loop
            for d in live:
                d.refresh_memory()
            return placement.plan(est.total, budget.host, live, self.config.deployments.max_running,
                                  needed_gpu=est.gpu, gpu_budget=budget.gpu)

        plan = await asyncio.to_thread(measure)
        plan.estimate = est
        if not plan.fits:
            figures = plan.figures(live)
            figures["estimate"] = {k: round(v / memory.MIB, 1) for k, v in est.to_dict().items()}
            if plan.too_many:
                raise InsufficientResourcesError(
                    f"model '{model.name}' would be deployment {plan.running + 1} but at most {plan.max_running} "
                    "may run at once (deployments.max_running, the max_concurrent_models of GET /api/config), and "
                    "no idle unpinned deployment can be evicted", details={"model": model.name, **figures})
            if plan.gpu_short:
                raise InsufficientResourcesError(
                    f"model '{model.name}' needs about {figures['needed_gpu_mb']} MiB of GPU memory but only "
                    f"{max(0.0, figures['gpu_budget_mb'] - figures['gpu_in_use_mb']):.1f} MiB of the GPUs' "
                    f"{figures['gpu_budget_mb']} MiB budget are free, and evicting the idle unpinned deployments "
                    "would not free enough", details={"model": model.name, **figures})
            raise InsufficientResourcesError(
                f"model '{model.name}' needs about {figures['needed_mb']} MiB but only "
                f"{figures['available_mb']} MiB of the {figures['budget_mb']} MiB budget are free, and evicting "
                "the idle unpinned deployments would not free enough", details={"model": model.name, **figures})
        return plan

    async def _estimate(self, model: Model, load: LoadSettings) -> memory.MemoryEstimate:
        """The memory estimate of ``model`` under ``load``; an external engine's is unknown before it runs (0)."""
        if model.framework == "vllm":
            return memory.MemoryEstimate()
        layers = load.n_gpu_layers
        if layers == AUTO_GPU_LAYERS:
            layers = -1 if self.has_gpu() else 0  # the most it may put on a GPU; resolved after placement
        return await asyncio.to_thread(
            memory.estimate, model.path, n_ctx=load.n_ctx, n_slots=load.n_slots, n_batch=load.n_batch,
            kv_cache_type=load.kv_cache_type, n_gpu_layers=layers,
            draft_tokens=self.config.engine.ngram_draft_tokens, size_bytes=model.size_bytes)

    async def _create(self, model: Model, load: LoadSettings, util: float | None, port: int | None,
                      pinned: bool | None, model_source: str | None, est: memory.MemoryEstimate) -> Deployment:
        """Record and build the deployment (not started yet)."""
        if load.n_gpu_layers == 0 and est.gpu:
            est = dataclasses.replace(est, gpu=0)  # auto GPU layers resolved to the CPU
        needed = est.total
        if pinned is None:
            pinned = self.config.deployments.pin_default and model.name == await self._default_name()
        row = await self.repo.save(model.name, state=DeploymentState.PENDING.value,
                                   settings=load.to_dict(), error=None, port=port, pinned=pinned,
                                   stop_reason=None, note=None, memory_bytes=needed,
                                   gpu_memory_utilization=util, model_source=model_source)
        dep = self._new_deployment(model, load)
        if row is not None:
            dep.id = dep_id(row["id"])
            self._ids[dep.id] = model.name
        dep.port, dep.pinned, dep.memory_bytes, dep.memory_estimate = port, bool(pinned), needed, est
        dep.gpu_memory_utilization, dep.model_source = util, model_source
        dep.last_used = time.time()
        parts = ", ".join(f"{k} {v / memory.MIB:.1f}" for k, v in est.to_dict().items() if v and k != "total")
        self.logs.write(model.name, "info", f"deployment {dep.id} created: {load.to_dict()}, estimated memory "
                                            f"{needed / memory.MIB:.1f} MiB ({parts} MiB), pinned={dep.pinned}, "
                                            f"port={port}")
        if util is not None and not self.has_gpu():
            dep.note = "no GPU: gpu_memory_utilization is recorded but the model runs on the CPU"
            dep.log("warning", f"no GPU on this machine: gpu_memory_utilization={util:g} is recorded, "
                               "the model runs on the CPU")
        return dep

    async def _default_name(self) -> str | None:
        model = await self.registry.find(self.config.models.default)
        return model.name if model else None

    async def _evict(self, victim: Deployment, for_model: str, plan: placement.Plan) -> None:
        """Unload ``victim`` to make room for ``for_model``; logged in both models' logs and published."""
        mb = memory.MIB
        note = (f"evicted to make room for '{for_model}' (least recently used idle deployment; needed "
                f"{plan.needed / mb:.1f} MiB, budget {plan.budget / mb:.1f} MiB, in use {plan.in_use / mb:.1f} MiB)")
        log.warning("deployment %s (%s) %s", victim.id, victim.model.name, note)
        victim.log("warning", note)
        self.logs.write(for_model, "info",
                        f"evicted '{victim.model.name}' ({victim.id}, {victim.placed_bytes() / mb:.1f} MiB, "
                        f"idle since {time.strftime('%H:%M:%S', time.localtime(victim.last_used))}) to make room")
        self.events.publish("deployment.evicted", {"model": victim.model.name, "deployment_id": victim.id,
                                                   "for_model": for_model, "note": note})
        await self._stop_dep(victim, "evicted", f"model '{victim.model.name}' was evicted", note=note)

    # -- stopping ---------------------------------------------------------------
    async def _stop_dep(self, dep: Deployment, reason: str, message: str, *, note: str | None = None,
                        graceful: bool = False, release_port: bool = True) -> None:
        """Stop ``dep``, drop it from the live deployments and free its port."""
        dep.stop_reason = reason
        if note is not None:
            dep.note = note
        await dep.stop(FinishReason.SHUTDOWN, message, graceful=graceful)
        await dep.wait_stopped()
        if self._deployments.get(dep.model.name) is dep:
            del self._deployments[dep.model.name]
        if release_port and dep.port is not None and self.ports.owner(dep.port) == dep.model.name:
            await self.ports.release(dep.port)
        await self._persist(dep, force=True)

    async def stop_model(self, name: str | None, *, force: bool = False, timeout: float | None = None) -> bool:
        """Stop the deployment of ``name``; False if it was not running.

        Without ``force`` running generations may finish; after ``timeout``
        seconds that is an :class:`OperationTimeoutError` (the stop goes on).
        With ``force`` they are cancelled at once.
        """
        model = await self.resolve(name)
        dep = self._deployments.get(model.name)
        if dep is None:
            return False
        if dep.state is DeploymentState.STOPPED:
            del self._deployments[model.name]
            return False
        message = f"model '{model.name}' was unloaded"
        task = self.background.spawn(self._stop_dep(dep, "stopped", message, graceful=not force))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            raise OperationTimeoutError(
                f"model '{model.name}' is still finishing generations after {timeout:g}s; the stop goes on"
                " (use force to cancel them)",
                details={"deployment_id": dep.id, "model": model.name, "state": dep.state.value,
                         "timeout": timeout}) from None
        self._on_status(f"unloaded {model.name}")
        return True

    async def restart_model(self, name: str | None, *, force: bool = False,
                            timeout: float | None = None) -> Deployment:
        """Stop and start again with the same settings, port and pinning (or the stored ones)."""
        model = await self.resolve(name)
        dep = self._deployments.get(model.name)
        if dep is not None:
            settings, port, pinned = dep.settings.to_dict(), dep.port, dep.pinned
            util = dep.gpu_memory_utilization
            await self.stop_model(model.name, force=force, timeout=timeout)
        else:
            row = await self.repo.for_model(model.name) or {}
            settings, port, pinned = row.get("settings") or {}, row.get("port"), row.get("pinned")
            util = row.get("gpu_memory_utilization")
        settings = {k: v for k, v in settings.items() if k in SETTING_KEYS}
        if util is not None:
            settings["gpu_memory_utilization"] = util
        return await self.start_model(model.name, settings=settings, port=port, pinned=pinned,
                                      wait=True, timeout=timeout)

    async def start_checked(self, name: str, *, settings: dict[str, Any] | None = None, force: bool = False,
                            restart: bool = False, timeout: float | None = None) -> Deployment:
        """Start (``force``: stop a running one first) or restart model ``name`` and wait for the outcome.

        A start that did not end in ``running`` raises the deployment's own
        typed failure (the engine's error, a missing vLLM, a timeout), so a
        task reports why.
        """
        try:
            if restart:
                dep = await self.restart_model(name, force=force, timeout=timeout)
            else:
                if force and self.state_of(name) is DeploymentState.RUNNING:
                    await self.stop_model(name, force=True, timeout=timeout)
                dep = await self.start_model(name, settings=settings, wait=True, timeout=timeout)
        except (OperationTimeoutError, InsufficientResourcesError):
            raise
        except LlmdError as err:
            live = self._deployments.get(name)
            failure = live.failure if live is not None else None
            raise (failure or err) from None
        if dep.state is not DeploymentState.RUNNING:
            if dep.failure is not None:
                raise dep.failure
            raise EngineError(f"model '{name}' failed to start: {dep.error}",
                              details={"model": name, "state": dep.state.value})
        return dep

    # -- the same operations addressed by deployment id ---------------------------
    async def start_deployment(self, model_id: str, *, settings: dict[str, Any], port: int | None,
                               pinned: bool | None, wait: bool, timeout: float | None,
                               model_source: str | None) -> tuple[DeploymentInfo, bool]:
        """Start a deployment of ``model_id``; the record, and whether a new deployment was created."""
        model = await self.resolve(model_id)
        before = self._deployments.get(model.name)
        dep = await self.start_model(model.name, settings=settings, port=port, pinned=pinned, wait=wait,
                                     timeout=timeout, model_source=model_source)
        return await self.record(dep.id), dep is not before

    async def stop_deployment(self, deployment_id: str, *, force: bool, timeout: float | None) -> DeploymentInfo:
        """Stop a live deployment; INVALID_ACTION when it is already stopped or stopping."""
        info = await self.record(deployment_id)
        if not info.live or info.state in (DeploymentState.STOPPED, DeploymentState.STOPPING):
            raise InvalidActionError(f"deployment '{deployment_id}' is already {_public_state(info.state)}",
                                     details={"deployment_id": deployment_id, "status": info.state.value})
        await self.stop_model(info.model, force=force, timeout=timeout)
        return await self.record(deployment_id)

    async def restart_deployment(self, deployment_id: str, *, force: bool, timeout: float | None) -> DeploymentInfo:
        """Stop (if running) and start again with the same settings and port; answers once loaded."""
        info = await self.record(deployment_id)
        dep = await self.restart_model(info.model, force=force, timeout=timeout)
        return await self.record(dep.id)

    async def delete_deployment(self, deployment_id: str, *, force: bool = True) -> DeploymentInfo:
        """Stop (if live) and delete a deployment record; the model and its log stay."""
        info = await self.record(deployment_id)
        dep = self._deployments.get(info.model)
        if dep is not None and dep.id == deployment_id:
            await self.stop_model(info.model, force=force)
        await self.repo.delete(_row_id(deployment_id))
        self._ids.pop(deployment_id, None)
        self.logs.write(info.model, "info", f"deployment {deployment_id} deleted")
        return info

    # -- the seed-style load and unload -----------------------------------------
    async def load(self, name: str | None, *, quantization: str | None = None,
                   prefer_gpu: bool | None = None) -> LoadResult:
        """Load a registered model and wait for the load to finish.

        ``quantization`` picks the model of the same family with that
        quantization. ``prefer_gpu`` True offloads every layer when the engine
        can (the result says when it cannot), False keeps the model on the
        CPU. Loading an already running model with no wishes joins it; other
        settings reload it. A failed load raises :class:`ModelLoadError`.
        """
        if self.background.stopping:
            raise ShuttingDownError()
        model = await self.resolve(name)
        if quantization is not None:
            model = await self.registry.with_quantization(model.name, quantization)
            self.auth.check_model(model)
        gpu = await asyncio.to_thread(self.has_gpu)
        layers = 0 if prefer_gpu is False else -1 if prefer_gpu and gpu else None
        existing = self._deployments.get(model.name)
        if existing is not None and existing.state in (DeploymentState.PENDING, DeploymentState.STARTING):
            await existing.wait_loaded(3600)
        if layers is None and existing is not None and existing.state is DeploymentState.RUNNING:
            # A load that asks for nothing in particular joins the running deployment, whatever
            # settings another API started it with.
            dep = existing
        else:
            settings = {"n_gpu_layers": layers} if layers is not None else None
            dep = await self.start_model(model.name, settings=settings, wait=True, timeout=3600)
        if dep.state is not DeploymentState.RUNNING:
            raise ModelLoadError(f"model '{model.name}' failed to load: {dep.error}",
                                 details={"model": model.name, "state": dep.state.value})
        return LoadResult(dep.info(), model.quantization, gpu, prefer_gpu)

    async def unload(self, name: str | None) -> Unloaded:
        """Stop a model's deployment and free its memory (at once); ``was_loaded`` False if it was not."""
        model = await self.resolve(name)
        return Unloaded(model.name, await self.stop_model(model.name, force=True))

    # -- health checks -----------------------------------------------------------
    def stall(self, bound_s: float) -> str | None:
        """A deployment whose engine has been inside one step for longer than ``bound_s`` (0: never), in
        words; the daemon then stops feeding systemd's watchdog, since a stuck llama_decode thread cannot be
        stopped inside the process: the restart is the way out."""
        if bound_s <= 0:
            return None
        for dep in self._deployments.values():
            took = dep.stalled_s()
            if took > bound_s:
                return (f"the engine of '{dep.model.name}' has been inside one decode step for {took:.0f}s "
                        f"(engine.stall_timeout_s={bound_s:g})")
        return None

    async def _health_loop(self) -> None:
        """Probe each running deployment every ``deployments.health_check_interval_s``."""
        failures: dict[str, int] = {}
        while not self.background.stopping:
            await asyncio.sleep(max(1.0, self.config.deployments.health_check_interval_s))
            try:
                await self.check_health(failures)
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round
                log.exception("health check failed")

    async def check_health(self, failures: dict[str, int]) -> None:
        """One round: a deployment that fails ``HEALTH_FAILURES`` probes in a row goes to ``error``
        (published, so ``/ws/monitor`` subscribers see the change); ``failures`` carries the counts."""
        for dep in list(self._deployments.values()):
            if dep.state is not DeploymentState.RUNNING:
                failures.pop(dep.id, None)
                continue
            problem = await dep.probe()
            if problem is None:
                failures.pop(dep.id, None)
                continue
            failures[dep.id] = failures.get(dep.id, 0) + 1
            dep.log("warning", f"health check {failures[dep.id]}/{HEALTH_FAILURES} failed: {problem}")
            if failures[dep.id] >= HEALTH_FAILURES:
                failures.pop(dep.id, None)
                dep.fail(f"{problem} ({HEALTH_FAILURES} health checks in a row)")

    # -- keep-alive ---------------------------------------------------------------
    async def _idle_loop(self) -> None:
        """Unload unpinned deployments idle for longer than their keep-alive (``deployments.keep_alive_s``,
        or the one a request gave); a request that sets a keep-alive wakes the loop to look again."""
        while not self.background.stopping:
            keeps = [k for k in [self.config.deployments.keep_alive_s] if k > 0]
            keeps += [d.keep_alive_s for d in self._deployments.values()
                      if d.keep_alive_s is not None and d.keep_alive_s >= 0]
            interval = max(0.05, min(30.0, min(keeps) / 4)) if keeps else 30.0
            try:
                await asyncio.wait_for(self._idle_wake.wait(), interval)
            except TimeoutError:
                pass
            self._idle_wake.clear()
            if self.background.stopping:
                continue
            try:
                await self.unload_idle(self.config.deployments.keep_alive_s)
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round
                log.exception("idle unload failed")

    async def unload_idle(self, keep_alive_s: float) -> list[str]:
        """Unload every unpinned deployment idle for longer than its keep-alive; returns their names.

        ``keep_alive_s`` applies to deployments without one of their own (0:
        never); a deployment's own (a request's ``keep_alive``) wins: 0 is at
        once, a negative value never.
        """
        done = []
        async with self._place_lock:
            now = time.time()
            for dep in list(self._deployments.values()):
                own = dep.keep_alive_s
                keep = keep_alive_s if own is None else own
                if (own is None and keep_alive_s <= 0) or keep < 0:
                    continue
                if dep.pinned or not dep.is_idle() or now - dep.last_used < keep:
                    continue
                which = "keep_alive_s" if own is None else "the keep_alive a request gave"
                note = f"unloaded after {now - dep.last_used:.0f}s idle ({which}={keep:g})"
                log.info("deployment %s (%s) %s", dep.id, dep.model.name, note)
                dep.log("info", note)
                await self._stop_dep(dep, "idle", f"model '{dep.model.name}' was unloaded (idle)", note=note)
                self._on_status(f"unloaded {dep.model.name} (idle)")
                done.append(dep.model.name)
        return done

    # -- state records ------------------------------------------------------------
    def _state_changed(self, dep: Deployment) -> None:
        self.events.publish_threadsafe(f"deployment.{dep.model.name}", dep.info())
        self.background.spawn(self._persist(dep))

    async def _persist(self, dep: Deployment, *, force: bool = False) -> None:
        """Write ``dep``'s state to its row, unless a newer deployment of the model took its place."""
        current = self._deployments.get(dep.model.name)
        if not force and current is not None and current is not dep:
            return
        try:
            row = await self.repo.save(
                dep.model.name, state=dep.state.value, settings=dep.settings.to_dict(), error=dep.error,
                port=dep.port, pinned=dep.pinned, last_used=dep.last_used, started_at=dep.started_at,
                stopped_at=dep.stopped_at, stop_reason=dep.stop_reason, note=dep.note,
                memory_bytes=dep.memory_bytes, gpu_memory_utilization=dep.gpu_memory_utilization,
                model_source=dep.model_source)
        except Exception:  # noqa: BLE001 - a failed state write is logged, never raised into a load
            log.exception("recording the state of %s failed", dep.model.name)
            return
        if row is not None:
            self._ids[dep_id(row["id"])] = dep.model.name
            if not dep.id:
                dep.id = dep_id(row["id"])


def _public_state(state: DeploymentState) -> str:
    """The state as the APIs name it: the brief ``pending`` shows as ``starting``."""
    return "starting" if state is DeploymentState.PENDING else state.value
