"""Deployments: one per model, shared by every dialect; their lifecycle, placement and keep-alive.

``Fleet`` is the part of :class:`llmd.core.Core` that starts, stops,
restarts, restores, evicts and unloads deployments, binds their ports and
records their state. It is a mixin: it works on the attributes that
``Core.__init__`` sets (config, store, engine, registry, events, auth,
deployments and the bookkeeping dicts), so that every dialect keeps calling
one object.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Any, AsyncIterator

import psutil

from llmd.core import placement
from llmd.core.deployments import Deployment, Job
from llmd.core.engine.base import LoadSettings
from llmd.core.modellog import ModelLog
from llmd.core.registry import Model
from llmd.core.types import DeploymentState, FinishReason, GenerationResult
from llmd.errors import (
    ConflictError, DeploymentNotFoundError, DeploymentNotRunningError, EngineError, InsufficientResourcesError,
    LlmdError, OperationTimeoutError, ShuttingDownError, ValidationError,
)

log = logging.getLogger("llmd.core")

# Deployment states that hold (or are about to hold) memory.
LIVE = (DeploymentState.PENDING, DeploymentState.STARTING, DeploymentState.RUNNING)
# Keys of ``start_deployment(settings=...)``.
SETTING_KEYS = ("n_ctx", "max_model_len", "n_threads", "n_gpu_layers", "n_batch", "parallel", "kv_unified",
                "gpu_memory_utilization")
_FOREVER = 10 * 365 * 86400.0


def was_serving(row: dict[str, Any]) -> bool:
    """Whether a stored deployment served when the daemon last stopped (cleanly or not).

    A row still "starting" is left out on purpose: a load that took the
    daemon down with it must not be retried at every start.
    """
    return row["state"] == "running" or (row["state"] == "stopped" and row.get("stop_reason") == "shutdown")


class Listeners:
    """What Core needs to serve a deployment on its own port; the daemon provides the real one.

    ``start`` raises :class:`ConflictError` when the port is taken. Core never
    imports the web server: the daemon wires an object with these two methods.
    """

    async def start(self, port: int, model: str) -> None:  # pragma: no cover - protocol
        """Serve the OpenAI dialect for just ``model`` on ``port``."""
        raise NotImplementedError

    async def stop(self, port: int) -> None:  # pragma: no cover - protocol
        """Stop serving ``port``."""
        raise NotImplementedError


def dep_id(row_id: int) -> str:
    """The public id of deployment row ``row_id``."""
    return f"deploy_{row_id}"


class Fleet:
    """Deployment lifecycle for :class:`llmd.core.Core` (see the module docstring)."""

    async def restore_deployments(self) -> None:
        """Start again the deployments that served when the daemon last stopped (``deployments.restore``).

        Called by the daemon once the port listener hook is wired, since a
        restored deployment may serve its own port.
        """
        rows, self._to_restore = self._to_restore, []
        for row in rows:
            await self._restore(row)

    async def _restore(self, row: dict[str, Any]) -> None:
        """Start again, in the background, a deployment that served when the daemon last stopped.

        It comes back with the settings, port and pin it had, except that the
        default model keeps the settings of the current config (it may already
        be loading through ``models.load_default``; then only its port and pin
        are put back). A restore that cannot happen (the port is taken, the
        budget is short) is logged in the deployment's log and does not stop
        the daemon.
        """
        default = await self.registry.find(self.config.models.default)
        settings: dict[str, Any] | None = None
        if default is None or default.name != row["model"]:
            settings = dict(row.get("settings") or {})
            if row.get("gpu_memory_utilization") is not None:
                settings["gpu_memory_utilization"] = row["gpu_memory_utilization"]
        self.model_log(row["model"]).write("info", "restoring: it was serving when the daemon last stopped")
        try:
            await self.start_deployment(row["model"], settings=settings, port=row.get("port"),
                                        pinned=bool(row.get("pinned")), wait=False,
                                        model_source=row.get("model_source"))
            log.info("restoring the deployment of %s", row["model"])
        except LlmdError as exc:
            self.model_log(row["model"]).write("error", f"not restored: {exc.message}")
            log.warning("the deployment of %s was not restored: %s", row["model"], exc.message)
        except Exception:  # noqa: BLE001 - one bad record must not keep the daemon from starting
            self.model_log(row["model"]).write("error", "not restored: internal error; see the daemon's log")
            log.exception("restoring the deployment of %s failed", row["model"])

    def load_settings(self, model: Model) -> LoadSettings:
        """Runtime settings for ``model``: the model's own config first, then the engine config."""
        e = self.config.engine
        cfg = getattr(model, "config", None) or {}

        def own(key: str) -> int | None:
            value = cfg.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        n_ctx = own("n_ctx") or e.n_ctx or model.context_length or 4096
        if model.context_length:
            n_ctx = min(n_ctx, model.context_length)
        threads = own("n_threads") or e.n_threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1
        gpu_layers = own("n_gpu_layers")
        return LoadSettings(n_ctx=n_ctx, n_threads=threads, n_batch=e.n_batch,
                            n_gpu_layers=e.n_gpu_layers if gpu_layers is None else gpu_layers,
                            n_slots=e.parallel, kv_unified=e.kv_unified)

    def _settings_for(self, model: Model, settings: dict[str, Any] | None) -> tuple[LoadSettings, float | None]:
        """LoadSettings from a ``start_deployment`` settings dict, and the recorded gpu_memory_utilization."""
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
        if gpu_layers is None and util is not None and self._has_gpu():
            gpu_layers = -1  # a share of the GPU asked for: offload every layer (llama.cpp has no finer knob)
        kv = s.get("kv_unified")
        if kv is not None and not isinstance(kv, bool):
            raise ValidationError("kv_unified must be a boolean", field="kv_unified")
        out = dataclasses.replace(
            base,
            n_ctx=n_ctx if n_ctx is not None else base.n_ctx,
            n_threads=integer("n_threads", 1, 1024) or base.n_threads,
            n_batch=integer("n_batch", 1, 1 << 16) or base.n_batch,
            n_gpu_layers=base.n_gpu_layers if gpu_layers is None else gpu_layers,
            n_slots=integer("parallel", 1, 256) or base.n_slots,
            kv_unified=base.kv_unified if kv is None else kv,
        )
        return out, (float(util) if util is not None else None)

    def _has_gpu(self) -> bool:
        probe = getattr(self.engine, "supports_gpu", None)
        try:
            return bool(probe()) if callable(probe) else False
        except Exception:  # noqa: BLE001 - no answer means no GPU
            return False

    def model_log(self, name: str) -> ModelLog:
        """The persistent log of model ``name`` (created on first use)."""
        ml = self._logs.get(name)
        if ml is None:
            ml = self._logs[name] = ModelLog(self.config.state_dir / "logs", name, self.events)
        return ml

    def _new_deployment(self, model: Model, settings: LoadSettings | None = None) -> Any:
        settings = settings or self.load_settings(model)
        if getattr(model, "framework", "llama.cpp") == "vllm":
            from llmd.core.external import ExternalDeployment

            dep: Any = ExternalDeployment(model, settings, self.config, on_state=self._state_changed,
                                          on_finish=self._record_request, events=self.events,
                                          log_sink=self.model_log(model.name).write)
        else:
            dep = Deployment(model, settings, self.engine,
                             queue_size=self.config.engine.queue_size, prefill_chunk=self.config.engine.prefill_chunk,
                             on_finish=self._record_request, on_state=self._state_changed,
                             log_sink=self.model_log(model.name).write)
        for attr, value in (("memory_bytes", 0), ("stop_reason", None), ("note", None), ("port", None),
                            ("pinned", False), ("id", ""), ("model_source", None), ("gpu_memory_utilization", None)):
            if not hasattr(dep, attr):
                setattr(dep, attr, value)
        if not hasattr(dep, "last_used"):
            dep.last_used = time.time()
        self.deployments[model.name] = dep
        return dep

    async def _start_deployment(self, dep: Any) -> Any:
        name = dep.model.name
        self._on_status(f"loading model {name}")
        await dep.start()
        if dep.state is DeploymentState.RUNNING:
            dep.last_used = time.time()
            self._on_status(f"serving {name}")
        else:
            self._on_status(f"model {name} failed to load: {dep.error}")
            if dep.state is DeploymentState.ERROR and dep.port is not None:
                await self._release_port(dep.port)
        return dep

    async def deploy(self, model: Model) -> Deployment:
        """Load ``model`` into the engine (returns once loaded or failed)."""
        return await self.start_deployment(model.name, wait=True)

    # -- deployments (one per model, shared by every dialect) -------------
    async def start_deployment(self, name: str | None, *, settings: dict[str, Any] | None = None,
                               port: int | None = None, pinned: bool | None = None, wait: bool = True,
                               timeout: float | None = None, model_source: str | None = None) -> Any:
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
        if self.shutting_down:
            raise ShuttingDownError()
        model = await self.resolve(name)
        load, util = self._settings_for(model, settings)
        if port is not None and not 1 <= port <= 65535:
            raise ValidationError("port must be 1-65535", field="port")
        async with self._place_lock:
            existing = self.deployments.get(model.name)
            if existing is not None and existing.state in LIVE and existing.settings == load:
                if pinned is not None and pinned != existing.pinned:
                    existing.pinned = pinned
                    existing.log("info", "pinned" if pinned else "unpinned")
                if port is not None and port != existing.port:
                    await self._bind_port(port, model.name)
                    if existing.port is not None:
                        await self._release_port(existing.port)
                    existing.port = port
                if util is not None:
                    existing.gpu_memory_utilization = util
                if model_source:
                    existing.model_source = model_source
                await self._persist(existing)
                dep = existing
                created = False
            else:
                keep_port = existing.port if existing is not None else None
                if existing is not None:
                    pinned = existing.pinned if pinned is None else pinned
                    port = existing.port if port is None else port
                # Everything that can refuse the start comes before anything is stopped.
                plan = await self._plan(model, load)
                fresh_port = port is not None and port != keep_port
                if fresh_port:
                    await self._bind_port(port, model.name)
                try:
                    if existing is not None:
                        if existing.state in LIVE:
                            existing.log("info", "restarting with new settings")
                        await self._stop_dep(existing, "restart", "restarting with new settings",
                                             release_port=port != keep_port)
                    for victim in plan.evict:
                        await self._evict(victim, model.name, plan)
                    dep = await self._create(model, load, util, port, pinned, model_source, plan.needed)
                except BaseException:
                    if fresh_port and port is not None:
                        await self._release_port(port)
                    raise
                created = True
        if created:
            self._spawn(self._start_deployment(dep))
        if wait:
            await self._wait_loaded(dep, timeout)
        return dep

    async def _wait_loaded(self, dep: Any, timeout: float | None) -> None:
        await dep.wait_loaded(_FOREVER if timeout is None else timeout)
        if dep.state in (DeploymentState.PENDING, DeploymentState.STARTING):
            raise OperationTimeoutError(
                f"model '{dep.model.name}' is still loading after {timeout:g}s; the load goes on",
                details={"deployment_id": dep.id, "model": dep.model.name, "state": dep.state.value,
                         "timeout": timeout})

    async def _plan(self, model: Model, load: LoadSettings) -> placement.Plan:
        """Will ``model`` fit the budget (after evictions)? InsufficientResourcesError with the figures if not."""
        external = getattr(model, "framework", "llama.cpp") == "vllm"
        needed = 0 if external else await asyncio.to_thread(
            placement.estimate_bytes, model.path, load.n_ctx, load.n_slots, model.size_bytes)
        live = [d for d in self.deployments.values() if d.state in LIVE and d.model.name != model.name]
        budget = placement.budget_bytes(self.config.deployments.memory_budget_mb)
        plan = placement.plan(needed, budget, live)
        if not plan.fits:
            figures = plan.figures(live)
            raise InsufficientResourcesError(
                f"model '{model.name}' needs about {figures['needed_mb']} MiB but only "
                f"{figures['available_mb']} MiB of the {figures['budget_mb']} MiB budget are free, and evicting "
                "the idle unpinned deployments would not free enough", details={"model": model.name, **figures})
        return plan

    async def _create(self, model: Model, load: LoadSettings, util: float | None, port: int | None,
                      pinned: bool | None, model_source: str | None, needed: int) -> Any:
        """Record and build the deployment (not started yet)."""
        if pinned is None:
            pinned = self.config.deployments.pin_default and model.name == await self._default_name()
        row = await self.store.deployments.save(model.name, state=DeploymentState.PENDING.value,
                                                settings=load.to_dict(), error=None, port=port, pinned=pinned,
                                                stop_reason=None, note=None, memory_bytes=needed,
                                                gpu_memory_utilization=util, model_source=model_source)
        dep = self._new_deployment(model, load)
        if row is not None:
            dep.id = dep_id(row["id"])
            self._ids[dep.id] = model.name
        dep.port, dep.pinned, dep.memory_bytes = port, bool(pinned), needed
        dep.gpu_memory_utilization, dep.model_source = util, model_source
        dep.last_used = time.time()
        self.model_log(model.name).write(
            "info", f"deployment {dep.id} created: {load.to_dict()}, estimated memory "
                    f"{needed / placement.MIB:.1f} MiB, pinned={dep.pinned}, port={port}")
        if util is not None and not self._has_gpu():
            dep.note = "no GPU: gpu_memory_utilization is recorded but the model runs on the CPU"
            dep.log("warning", f"no GPU on this machine: gpu_memory_utilization={util:g} is recorded, "
                               "the model runs on the CPU")
        return dep

    async def _default_name(self) -> str | None:
        model = await self.registry.find(self.config.models.default)
        return model.name if model else None

    async def _evict(self, victim: Any, for_model: str, plan: placement.Plan) -> None:
        """Unload ``victim`` to make room for ``for_model``; logged in both models' logs and published."""
        mb = placement.MIB
        note = (f"evicted to make room for '{for_model}' (least recently used idle deployment; needed "
                f"{plan.needed / mb:.1f} MiB, budget {plan.budget / mb:.1f} MiB, in use {plan.in_use / mb:.1f} MiB)")
        log.warning("deployment %s (%s) %s", victim.id, victim.model.name, note)
        victim.log("warning", note)
        self.model_log(for_model).write(
            "info", f"evicted '{victim.model.name}' ({victim.id}, {victim.memory_bytes / mb:.1f} MiB, "
                    f"idle since {time.strftime('%H:%M:%S', time.localtime(victim.last_used))}) to make room")
        self.events.publish("deployment.evicted", {"model": victim.model.name, "deployment_id": victim.id,
                                                   "for_model": for_model, "note": note})
        await self._stop_dep(victim, "evicted", f"model '{victim.model.name}' was evicted", note=note)

    async def _stop_dep(self, dep: Any, reason: str, message: str, *, note: str | None = None,
                        graceful: bool = False, release_port: bool = True) -> None:
        """Stop ``dep``, drop it from the live deployments and free its port."""
        dep.stop_reason = reason
        if note is not None:
            dep.note = note
        if getattr(dep, "external", False):
            await dep.stop(FinishReason.SHUTDOWN, message)
        else:
            await dep.stop(FinishReason.SHUTDOWN, message, graceful=graceful)
            await dep.wait_stopped()
        if self.deployments.get(dep.model.name) is dep:
            del self.deployments[dep.model.name]
        if release_port and dep.port is not None and self._ports.get(dep.port) == dep.model.name:
            await self._release_port(dep.port)
        await self._persist(dep, force=True)

    async def stop_deployment(self, name: str | None, *, force: bool = False, timeout: float | None = None) -> bool:
        """Stop the deployment of ``name``; False if it was not running.

        Without ``force`` running generations may finish; after ``timeout``
        seconds that is an :class:`OperationTimeoutError` (the stop goes on).
        With ``force`` they are cancelled at once.
        """
        model = await self.resolve(name)
        dep = self.deployments.get(model.name)
        if dep is None:
            return False
        if dep.state is DeploymentState.STOPPED:
            del self.deployments[model.name]
            return False
        message = f"model '{model.name}' was unloaded"
        task = self._spawn(self._stop_dep(dep, "stopped", message, graceful=not force))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            raise OperationTimeoutError(
                f"model '{model.name}' is still finishing generations after {timeout:g}s; the stop goes on"
                " (use force to cancel them)",
                details={"deployment_id": dep.id, "model": model.name, "state": dep.state.value,
                         "timeout": timeout}) from None
        self._on_status(f"unloaded {model.name}")
        return True

    async def restart_deployment(self, name: str | None, *, force: bool = False,
                                 timeout: float | None = None) -> Any:
        """Stop and start again with the same settings, port and pinning (or the stored ones)."""
        model = await self.resolve(name)
        dep = self.deployments.get(model.name)
        if dep is not None:
            settings, port, pinned = dep.settings.to_dict(), dep.port, dep.pinned
            util = dep.gpu_memory_utilization
            await self.stop_deployment(model.name, force=force, timeout=timeout)
        else:
            row = await self.store.deployments.for_model(model.name) or {}
            settings, port, pinned = row.get("settings") or {}, row.get("port"), row.get("pinned")
            util = row.get("gpu_memory_utilization")
        settings = {k: v for k, v in settings.items() if k in SETTING_KEYS}
        if util is not None:
            settings["gpu_memory_utilization"] = util
        return await self.start_deployment(model.name, settings=settings, port=port, pinned=pinned,
                                           wait=True, timeout=timeout)

    def deployment_by_id(self, deployment_id: str) -> Any:
        """The live deployment with id ``deploy_<n>``.

        Raises :class:`DeploymentNotFoundError` for an unknown id and
        :class:`DeploymentNotRunningError` for a known one that is stopped.
        """
        name = self._ids.get(deployment_id)
        if name is None:
            raise DeploymentNotFoundError(f"deployment '{deployment_id}' does not exist",
                                          field="deployment_id", details={"deployment_id": deployment_id})
        dep = self.deployments.get(name)
        if dep is None or dep.id != deployment_id:
            raise DeploymentNotRunningError(f"deployment '{deployment_id}' ({name}) is stopped",
                                            details={"deployment_id": deployment_id, "model": name,
                                                     "state": DeploymentState.STOPPED.value})
        self.auth.check_model(dep.model)  # a key limited to other models gets a 403 here
        return dep

    async def deployment_record(self, deployment_id: str) -> dict[str, Any]:
        """A deployment in any state: the live figures, or the stored record of a stopped one."""
        name = self._ids.get(deployment_id)
        row = None
        if name is not None and deployment_id.startswith("deploy_") and deployment_id[7:].isdigit():
            row = await self.store.deployments.get(int(deployment_id[7:]))
        if row is None:
            self._ids.pop(deployment_id, None)
            raise DeploymentNotFoundError(f"deployment '{deployment_id}' does not exist",
                                          field="deployment_id", details={"deployment_id": deployment_id})
        return self._record(row)

    def _record(self, row: dict[str, Any]) -> dict[str, Any]:
        dep = self.deployments.get(row["model"])
        rec = {
            "deployment_id": dep_id(row["id"]), "model": row["model"], "state": row["state"],
            "error": row.get("error"), "settings": row.get("settings") or {}, "port": row.get("port"),
            "pinned": bool(row.get("pinned")), "last_used": row.get("last_used"),
            "started_at": row.get("started_at"), "stopped_at": row.get("stopped_at"),
            "stop_reason": row.get("stop_reason"), "note": row.get("note"),
            "memory_bytes": row.get("memory_bytes") or 0, "model_source": row.get("model_source"),
            "gpu_memory_utilization": row.get("gpu_memory_utilization"),
            "created_at": row.get("created_at"), "updated_at": row.get("updated_at"),
            "queued": 0, "active": 0, "idle_s": 0.0, "device": None, "live": False,
        }
        if dep is not None and dep.id == rec["deployment_id"]:
            stats = dep.stats()
            rec.update({k: v for k, v in stats.items() if k != "model"})
            rec["settings"] = dep.settings.to_dict()
            rec["live"] = True
        return rec

    async def deployment_records(self, state: str | None = None) -> list[dict[str, Any]]:
        """Every deployment record (live figures where live), optionally in one state."""
        out = []
        for row in await self.store.deployments.list():
            self._ids[dep_id(row["id"])] = row["model"]
            rec = self._record(row)
            if state is None or rec["state"] == state:
                out.append(rec)
        return out

    async def delete_deployment(self, deployment_id: str, *, force: bool = True) -> None:
        """Stop (if live) and delete a deployment record; the model and its log stay."""
        rec = await self.deployment_record(deployment_id)
        dep = self.deployments.get(rec["model"])
        if dep is not None and dep.id == deployment_id:
            await self.stop_deployment(rec["model"], force=force)
        await self.store.deployments.delete(int(deployment_id[7:]))
        self._ids.pop(deployment_id, None)
        self.model_log(rec["model"]).write("info", f"deployment {deployment_id} deleted")

    async def model_logs(self, name: str, lines: int = 100) -> list[dict[str, Any]]:
        """The last ``lines`` log entries of model ``name`` ({ts, level, message}), also when it is stopped."""
        model = await self.registry.find(name) if name else None
        return await asyncio.to_thread(self.model_log(model.name if model else name).tail, lines)

    async def follow_model_log(self, name: str, lines: int, heartbeat_s: float) -> AsyncIterator[dict[str, Any] | None]:
        """The last ``lines`` entries of model ``name``'s log, then each new one as it is logged; ``None``
        every ``heartbeat_s`` of quiet (for a keep-alive). Ends when the caller stops iterating.

        It subscribes before it reads the tail, so no line falls between the two
        and none is sent twice.
        """
        with self.events.subscribe(f"log.{name}") as sub:
            tail = await self.model_logs(name, lines)
            seen = {(e.get("ts"), e.get("message")) for e in tail}
            for entry in tail:
                yield entry
            while True:
                got = await sub.get(heartbeat_s)
                if got is None:
                    yield None
                    continue
                entry = got[1]
                if not isinstance(entry, dict):
                    continue
                if seen:
                    if (entry.get("ts"), entry.get("message")) in seen:
                        continue  # logged before the tail was read: already sent
                    seen.clear()  # the queue is in order: everything after this is new
                yield entry

    # -- ports ------------------------------------------------------------
    async def _bind_port(self, port: int, name: str) -> None:
        owner = self._ports.get(port)
        if owner == name:
            return
        if owner is not None:
            raise ConflictError(f"port {port} is already serving the deployment of '{owner}'", field="port",
                                details={"port": port, "model": owner})
        if port == self.config.server.port:
            raise ConflictError(f"port {port} is llmd's own API port", field="port", details={"port": port})
        if self.listeners is None:
            raise ValidationError("port: this llmd instance cannot serve extra ports (no listener hook)",
                                  field="port")
        await self.listeners.start(port, name)
        self._ports[port] = name
        self.model_log(name).write("info", f"serving the OpenAI API for this model on port {port}")

    async def _release_port(self, port: int) -> None:
        name = self._ports.pop(port, None)
        if name is None or self.listeners is None:
            return
        try:
            await self.listeners.stop(port)
        except Exception:  # noqa: BLE001 - a listener that fails to stop must not block a stop
            log.warning("stopping the listener on port %d failed", port, exc_info=True)
        self.model_log(name).write("info", f"stopped serving port {port}")

    # -- keep-alive -------------------------------------------------------
    async def _idle_loop(self) -> None:
        """Unload unpinned deployments idle for longer than ``deployments.keep_alive_s``."""
        while not self.shutting_down:
            keep = self.config.deployments.keep_alive_s
            await asyncio.sleep(30.0 if keep <= 0 else max(0.05, min(30.0, keep / 4)))
            if keep <= 0 or self.shutting_down:
                continue
            try:
                await self.unload_idle(keep)
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round
                log.exception("idle unload failed")

    async def unload_idle(self, keep_alive_s: float) -> list[str]:
        """Unload every unpinned deployment idle for ``keep_alive_s`` seconds; returns their names."""
        done = []
        async with self._place_lock:
            now = time.time()
            for dep in list(self.deployments.values()):
                if dep.pinned or not self._is_idle(dep) or now - dep.last_used < keep_alive_s:
                    continue
                note = f"unloaded after {now - dep.last_used:.0f}s idle (keep_alive_s={keep_alive_s:g})"
                log.info("deployment %s (%s) %s", dep.id, dep.model.name, note)
                dep.log("info", note)
                await self._stop_dep(dep, "idle", f"model '{dep.model.name}' was unloaded (idle)", note=note)
                self._on_status(f"unloaded {dep.model.name} (idle)")
                done.append(dep.model.name)
        return done

    @staticmethod
    def _is_idle(dep: Any) -> bool:
        probe = getattr(dep, "is_idle", None)
        if callable(probe):
            return bool(probe())
        stats = dep.stats()
        return dep.state is DeploymentState.RUNNING and not stats.get("active") and not stats.get("queued")

    async def load_model(self, name: str | None, *, n_gpu_layers: int | None = None) -> Deployment:
        """Load a registered model (by name or alias) and wait for the load to finish.

        Loading an already running model with no settings, or the same
        settings, is a no-op; different settings reload it. A failed load is reported as the
        deployment's ``error`` state, and raised as :class:`EngineError`.
        """
        if self.shutting_down:
            raise ShuttingDownError()
        model = await self.resolve(name)
        settings = {"n_gpu_layers": n_gpu_layers} if n_gpu_layers is not None else None
        existing = self.deployments.get(model.name)
        if existing is not None and existing.state in (DeploymentState.PENDING, DeploymentState.STARTING):
            await existing.wait_loaded(3600)
        if settings is None and existing is not None and existing.state is DeploymentState.RUNNING:
            # A load that asks for nothing in particular joins the running deployment, whatever
            # settings another dialect (seed 002/004) started it with.
            return existing
        dep = await self.start_deployment(model.name, settings=settings, wait=True, timeout=3600)
        if dep.state is not DeploymentState.RUNNING:
            raise EngineError(f"model '{model.name}' failed to load: {dep.error}",
                              details={"model": model.name, "state": dep.state.value})
        return dep

    async def unload_model(self, name: str | None) -> bool:
        """Stop a model's deployment and free its memory; False if it was not loaded."""
        return await self.stop_deployment(name, force=True)

    def _state_changed(self, dep: Any) -> None:
        self.events.publish_threadsafe(f"deployment.{dep.model.name}", dep.stats())
        self._spawn(self._persist(dep))

    async def _persist(self, dep: Any, *, force: bool = False) -> None:
        """Write ``dep``'s state to its row, unless a newer deployment of the model took its place."""
        current = self.deployments.get(dep.model.name)
        if not force and current is not None and current is not dep:
            return
        try:
            row = await self.store.deployments.save(
                dep.model.name, state=dep.state.value, settings=dep.settings.to_dict(), error=dep.error,
                port=dep.port, pinned=dep.pinned, last_used=dep.last_used,
                started_at=getattr(dep, "started_at", None), stopped_at=getattr(dep, "stopped_at", None),
                stop_reason=dep.stop_reason, note=dep.note, memory_bytes=dep.memory_bytes,
                gpu_memory_utilization=dep.gpu_memory_utilization, model_source=dep.model_source)
        except Exception:  # noqa: BLE001 - a failed state write is logged, never raised into a load
            log.exception("recording the state of %s failed", dep.model.name)
            return
        if row is not None:
            self._ids[dep_id(row["id"])] = dep.model.name
            if not dep.id:
                dep.id = dep_id(row["id"])

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
