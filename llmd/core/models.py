"""Model-level operations: the registry seen with its deployments, usage, statistics, logs and tasks.

:class:`Models` is what the APIs call for anything about a model as a whole:
list and view it with its deployment's state, read its detail (process use
and request statistics), create, change or delete it (a running model is
stopped first when forced), read or follow its log, and start, stop or
restart it as a background task whose outcome can be read later.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from llmd.config import Config
from llmd.core.blobs import Blobs
from llmd.core.deployment import DeploymentInfo
from llmd.core.fleet import Fleet
from llmd.core.gguf_info import read_gguf_info
from llmd.core.modellog import LogEntry, ModelLogs
from llmd.core.monitor import Monitor, ProcessUsage
from llmd.core.registry import DEFAULT_ALIAS, Model, Registry, ollama_latest
from llmd.core.requestlog import RequestLog, RequestStats
from llmd.core.tasks import Task, TaskTracker
from llmd.core.types import DeploymentState, Page
from llmd.errors import ConflictError, InvalidModelFileError, ModelExistsError, ValidationError

STATES = tuple(s.value for s in DeploymentState)


@dataclass(frozen=True)
class ModelView:
    """A registered model with its deployment: state, live figures, and the sampling it answers with."""

    model: Model
    state: DeploymentState
    deployment: DeploymentInfo | None
    default: bool  # the configured default model
    sampling: dict[str, Any] = field(default_factory=dict)
    usage: ProcessUsage | None = None  # filled in where an API shows process figures
    expires_at: float | None = None  # running: when it is unloaded for idleness if nothing comes (None: never)

    @property
    def loaded(self) -> bool:
        """True while a running deployment serves it."""
        return self.state is DeploymentState.RUNNING


@dataclass(frozen=True)
class ModelDetail:
    """A model's view, process use and request statistics."""

    view: ModelView
    stats: RequestStats


@dataclass(frozen=True)
class ModelShow:
    """A model described in full: its view, every key of its GGUF header, and what it can do."""

    view: ModelView
    header: dict[str, Any]  # the GGUF header's keys (large arrays such as the vocabulary left out: None)
    capabilities: tuple[str, ...]  # completion, tools, embedding
    parameters: dict[str, Any]  # the model's own defaults (its config): sampling, n_ctx, stop, system


# Ollama's model parameters (a create's ``parameters``) -> the model config keys llmd applies.
CREATE_PARAMETERS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
                     "repeat_penalty": "repeat_penalty", "num_predict": "max_tokens", "num_ctx": "n_ctx",
                     "stop": "stop"}


@dataclass(frozen=True)
class DeletedModel:
    """What a delete removed."""

    model: Model
    file_removed: bool


@dataclass(frozen=True)
class Lifecycle:
    """The outcome of a start, stop or restart task: the deployment now, or whether one was running."""

    model: Model
    deployment: DeploymentInfo | None = None
    was_running: bool | None = None


@dataclass(frozen=True)
class Accepted:
    """A lifecycle operation that goes on in the background as ``task``."""

    task: Task
    model: Model
    action: str  # start | stop | restart


class Models:
    """Models as a whole, over the registry, the fleet, the logs, the request log and the monitor."""

    def __init__(self, config: Config, registry: Registry, fleet: Fleet, *, logs: ModelLogs,
                 requests: RequestLog, monitor: Monitor, tasks: TaskTracker) -> None:
        self.config = config
        self.registry = registry
        self.fleet = fleet
        self.logs = logs
        self.requests = requests
        self.monitor = monitor
        self.tasks = tasks
        self.blobs = Blobs(config.models_dir / "blobs")

    # -- reading ----------------------------------------------------------------
    def _view(self, model: Model, default: str | None) -> ModelView:
        dep = self.fleet.get(model.name)
        return ModelView(model, dep.state if dep is not None else DeploymentState.STOPPED,
                         dep.info() if dep is not None else None, model.name == default,
                         self.fleet.sampling_defaults(model))

    async def _default_name(self) -> str | None:
        model = await self.registry.find(self.config.models.default)
        return model.name if model else None

    async def list(self, *, status: str | None = None, framework: str | None = None) -> list[ModelView]:
        """Registered models by name, with their deployment state; optionally in one state or framework."""
        default = await self._default_name()
        views = [self._view(m, default) for m in await self.registry.list()]
        return [v for v in views if (status is None or v.state.value == status)
                and (framework is None or v.model.framework == framework)]

    async def page(self, number: int, size: int, *, status: str | None = None, framework: str | None = None,
                   usage: bool = False) -> Page[ModelView]:
        """One page of :meth:`list`; with ``usage``, each model with the process use of its running deployment."""
        views = await self.list(status=status, framework=framework)
        block = views[(number - 1) * size: number * size]
        if not usage:
            return Page(block, len(views), number, size)
        usages = await asyncio.gather(*(self.monitor.usage(self.fleet.get(v.model.name)) for v in block))
        block = [dataclasses.replace(v, usage=u) for v, u in zip(block, usages, strict=True)]
        return Page(block, len(views), number, size)

    async def get(self, ref: str) -> Model:
        """A model by name, alias or ``model-<n>`` id (a credential limited to others gets a 403)."""
        return await self.fleet.resolve(ref)

    async def view(self, ref: str) -> ModelView:
        """One model with its deployment state."""
        model = await self.get(ref)
        return self._view(model, await self._default_name())

    async def detail(self, ref: str) -> ModelDetail:
        """One model with its deployment, process use and request statistics."""
        model = await self.get(ref)
        view = dataclasses.replace(self._view(model, await self._default_name()),
                                   usage=await self.monitor.usage(self.fleet.get(model.name)))
        return ModelDetail(view, await self.requests.model_stats(model.name))

    async def running(self) -> list[ModelView]:
        """The models a running deployment serves, each with when it is unloaded if idle (``expires_at``)."""
        out = []
        for view in await self.list(status=DeploymentState.RUNNING.value):
            dep = self.fleet.get(view.model.name)
            out.append(dataclasses.replace(view, expires_at=self.fleet.expires_at(dep) if dep else None))
        return out

    async def show(self, ref: str) -> ModelShow:
        """One model with its whole GGUF header (read now, off the loop), capabilities and parameters."""
        model = await self.get(ref)
        header: dict[str, Any] = {}
        if model.format == "gguf":
            try:
                info = await asyncio.to_thread(read_gguf_info, model.path)
                header = {k: (None if isinstance(v, str) and v.startswith("<array of") else v)
                          for k, v in info.metadata.items()}
            except InvalidModelFileError:
                header = {}  # the file went away; the registry's fields still describe it
        caps = ["completion"]
        if model.chat_template or model.framework == "vllm":
            caps.append("tools")  # tool calls go through the chat (docs/tools.md), native or not
        if model.framework == "llama.cpp":
            caps.append("embedding")
        view = self._view(model, await self._default_name())
        return ModelShow(view, header, tuple(caps), dict(model.config))

    async def copy(self, source: str, destination: str) -> Model:
        """Give model ``source`` a second name, ``destination`` (an alias; Ollama's copy)."""
        model = await self.get(source)
        await self.registry.add_alias(destination, model.name)
        return await self.get(model.name)

    async def remove(self, ref: str) -> DeletedModel | None:
        """Remove a name: an alias goes alone (``None``); a model's own name deletes it, stopping it first."""
        for alias in (ref, ollama_latest(ref)):
            if alias and alias != DEFAULT_ALIAS:
                model = await self.registry.find(alias)
                if model is not None and model.name != alias and alias in model.aliases:
                    self.fleet.auth.check_model(model)
                    await self.registry.remove_alias(alias)
                    return None
        return await self.delete(ref, force=True)

    async def has_blob(self, digest: str) -> bool:
        """Whether blob ``digest`` (``sha256:<hex>``) is stored."""
        return await self.blobs.exists(digest)

    async def put_blob(self, digest: str, chunks: AsyncIterator[bytes]) -> bool:
        """Store an uploaded blob, checked against its digest; whether it was new."""
        return (await self.blobs.put(digest, chunks))[1]

    async def create_from_blobs(self, name: str, *, files: dict[str, str] | None, base: str | None,
                                system: str | None, parameters: dict[str, Any] | None,
                                template: str | None = None) -> Model:
        """Register model ``name`` from an uploaded GGUF blob (``files``: file name -> digest) or as a variant
        of model ``base``, with its own system prompt and parameters (Ollama's create).

        ``parameters`` are Ollama's names (``CREATE_PARAMETERS``; others are
        accepted and have no effect). ``template`` (a Go template) is kept in
        the metadata and not applied: the GGUF's own chat template renders
        the chat.
        """
        if (files is None) == (base is None):
            raise ValidationError("give either files (an uploaded GGUF blob) or from (a model)", field="files")
        if await self.registry.find(name) is not None:
            raise ModelExistsError(f"a model named '{name}' already exists; delete it first", field="model",
                                   details={"name": name})
        config = _create_config(parameters or {})
        if system:
            config["system"] = system
        metadata: dict[str, Any] = {"origin": {"source": "create"}}
        if template:
            metadata["ollama_template"] = template
        if base is not None:
            parent = await self.get(base)
            if parent.format != "gguf":
                raise ValidationError(f"from: model '{parent.name}' is not a GGUF file", field="from")
            path: Path = Path(parent.path)
            config = {**parent.config, **config}
            metadata["origin"]["from"] = parent.name
        else:
            assert files is not None
            ggufs = [(k, v) for k, v in files.items() if k.lower().endswith(".gguf")] or list(files.items())
            if len(ggufs) != 1:
                raise ValidationError("files: exactly one GGUF file is supported", field="files")
            fname, digest = ggufs[0]
            path = self.blobs.path(digest, f"files.{fname}")
            if not await asyncio.to_thread(path.is_file):
                raise ValidationError(f"files.{fname}: blob {digest} is not on the server; upload it first "
                                      f"(POST /api/blobs/{digest})", field=f"files.{fname}")
            metadata["origin"].update({"filename": fname, "sha256": digest.removeprefix("sha256:")})
        try:
            return await self.registry.add_file(path, name, source="local", metadata=metadata, config=config)
        except InvalidModelFileError as err:
            err.field = "files" if files is not None else "from"
            raise

    # -- changing ---------------------------------------------------------------
    async def add_file(self, path: str, name: str | None = None) -> Model:
        """Register a local GGUF file (its header gives architecture, context and quantization)."""
        return await self.registry.add_file(path, name)

    async def create(self, name: str, **fields: Any) -> Model:
        """Register a model with its framework, config, requirements and labels (see ``Registry.create``)."""
        return await self.registry.create(name, **fields)

    async def update(self, ref: str, *, config: dict[str, Any] | None = None, **fields: Any) -> ModelDetail:
        """Change the fields given (``config`` is merged); it applies at the next start."""
        model = await self.get(ref)
        await self.registry.update(model.name, config=config, **fields)
        return await self.detail(model.name)

    async def delete(self, ref: str, *, force: bool = False) -> DeletedModel:
        """Unregister a model, with its log; its file too when llmd owns it.

        A model that is running, starting or stopping needs ``force`` (a 409
        otherwise), which stops it at once first; a failed deployment is
        cleared away. Only a file under the models directory (a download) is
        removed, never a bundled or user-supplied one.
        """
        model = await self.get(ref)
        state = self.fleet.state_of(model.name)
        if state in (DeploymentState.RUNNING, DeploymentState.STARTING, DeploymentState.PENDING,
                     DeploymentState.STOPPING):
            if not force:
                raise ConflictError(
                    f"model '{model.name}' is {state.value}; stop it first or delete with force=true",
                    field="force", details={"model_id": model.external_id, "status": state.value})
        if self.fleet.get(model.name) is not None:
            await self.fleet.stop_model(model.name, force=True)
        removed = await self.registry.delete(model.name, owned_dir=self.config.models_dir)
        await self.logs.remove(model.name)
        return DeletedModel(model, removed)

    # -- logs -------------------------------------------------------------------
    async def read_logs(self, ref: str, lines: int) -> tuple[Model, list[LogEntry]]:
        """The model and the last ``lines`` lines of its log (also of a stopped model)."""
        model = await self.get(ref)
        return model, await self.logs.tail(model.name, lines)

    async def follow_logs(self, ref: str, lines: int, heartbeat_s: float) -> AsyncIterator[LogEntry | None]:
        """The model's log followed (see ``ModelLogs.follow``); an unknown model raises before anything is sent."""
        model = await self.get(ref)
        return self.logs.follow(model.name, lines, heartbeat_s)

    # -- lifecycle tasks ----------------------------------------------------------
    async def start(self, ref: str, *, settings: dict[str, Any] | None = None, force: bool = False,
                    timeout: float | None = None) -> Accepted:
        """Start the model in the background (``force``: restart a running one with the new settings).

        The task fails with OPERATION_TIMEOUT, INSUFFICIENT_RESOURCES (with
        the figures) or the engine's own error. No ``timeout``:
        ``deployments.start_timeout_s`` (300 s, the LLM Inference Service API's default).
        """
        model = await self.get(ref)
        timeout = self.config.deployments.start_timeout_s if timeout is None else timeout

        async def work(task: Task) -> Lifecycle:
            task.message = f"starting '{model.name}'"
            dep = await self.fleet.start_checked(model.name, settings=settings, force=force, timeout=timeout)
            task.message = f"model '{model.name}' is running"
            return Lifecycle(model, dep.info())

        return Accepted(self.tasks.spawn("start", model.name, work), model, "start")

    async def stop(self, ref: str, *, force: bool = False, timeout: float | None = None) -> Accepted:
        """Stop the model in the background; without ``force`` running generations may finish until ``timeout``
        (default ``deployments.stop_timeout_s``, 60 s)."""
        model = await self.get(ref)
        timeout = self.config.deployments.stop_timeout_s if timeout is None else timeout

        async def work(task: Task) -> Lifecycle:
            task.message = f"stopping '{model.name}'"
            was_running = await self.fleet.stop_model(model.name, force=force, timeout=timeout)
            task.message = f"model '{model.name}' " + ("is stopped" if was_running else "was not running")
            return Lifecycle(model, was_running=was_running)

        return Accepted(self.tasks.spawn("stop", model.name, work), model, "stop")

    async def restart(self, ref: str, *, force: bool = False, timeout: float | None = None) -> Accepted:
        """Stop (as :meth:`stop`) and start again with the same settings, in the background; ``timeout``
        (default ``deployments.start_timeout_s``) bounds each."""
        model = await self.get(ref)
        timeout = self.config.deployments.start_timeout_s if timeout is None else timeout

        async def work(task: Task) -> Lifecycle:
            task.message = f"restarting '{model.name}'"
            dep = await self.fleet.start_checked(model.name, force=force, restart=True, timeout=timeout)
            task.message = f"model '{model.name}' is running"
            return Lifecycle(model, dep.info())

        return Accepted(self.tasks.spawn("restart", model.name, work), model, "restart")

    def task(self, task_id: str) -> Task:
        """A lifecycle task by id (404 once forgotten)."""
        return self.tasks.get(task_id)


def _create_config(parameters: dict[str, Any]) -> dict[str, Any]:
    """Ollama's create ``parameters`` as model config; a value of the wrong kind is a 400 naming it."""
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        target = CREATE_PARAMETERS.get(key)
        if target is None:
            continue
        field = f"parameters.{key}"
        if target == "stop":
            stops = [value] if isinstance(value, str) else value
            if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
                raise ValidationError(f"{field} must be a string or a list of strings", field=field)
            out["stop"] = [s for s in stops if s]
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError(f"{field} must be a number", field=field)
        if target in ("top_k", "max_tokens", "n_ctx"):
            if value != int(value) or value < (16 if target == "n_ctx" else 1):
                raise ValidationError(f"{field} must be a whole number of at least {16 if target == 'n_ctx' else 1}",
                                      field=field)
            value = int(value)
        elif value < 0:
            raise ValidationError(f"{field} must be >= 0", field=field)
        out[target] = value
    return out

