"""How the daemon and the box are doing: health, status, machine figures, process use, metrics.

:class:`Monitor` answers every "how is it going" route of every API: the
shared health verdict, llmctl's status, the machine's resources and load, the
system health checks, the process figures of a deployment, and the Prometheus
text. The blocking samples (psutil, NVML) run in threads; see
:mod:`llmd.core.system`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

import psutil

from llmd import __version__
from llmd.config import Config
from llmd.core import memory, system
from llmd.core.alerts import AlertEvent, Alerts
from llmd.core.auth import Auth
from llmd.core.background import Background
from llmd.core.deployment import Deployment, DeploymentInfo
from llmd.core.events import EventBroker, Subscription
from llmd.core.fleet import Fleet
from llmd.core.history import History
from llmd.core.metrics import LiveState, Metrics
from llmd.core.registry import Registry
from llmd.core.requestlog import RequestLog, RequestTotals
from llmd.core.streams import OpenStreams
from llmd.core.types import DeploymentState


@dataclass(frozen=True)
class Health:
    """The daemon's health: ``status`` is ok, model_not_loaded or error."""

    status: str
    model_loaded: bool
    default_model: str
    store_ok: bool
    shutting_down: bool
    uptime_s: float
    active_streams: int
    deployments: list[DeploymentInfo]
    auth: dict[str, Any]
    process_rss_bytes: int
    memory_total_bytes: int
    version: str = __version__
    memory_budget_bytes: int = 0  # what deployments may hold together (core/memory.py)
    memory_budget_source: str = ""  # deployments.memory_budget_mb, or how it was derived


@dataclass(frozen=True)
class Status:
    """Everything ``llmctl status`` shows."""

    version: str
    pid: int
    engine: str
    health: Health
    memory_rss_bytes: int
    requests: RequestTotals
    state_dir: str
    socket: str | None
    listen: str


@dataclass(frozen=True)
class FleetLoad:
    """llmd's own load: deployments, generations and open streams."""

    deployments_running: int
    generations_active: int
    generations_queued: int
    active_streams: int


@dataclass(frozen=True)
class SystemLoad:
    """The machine's load and llmd's."""

    machine: system.MachineLoad
    llmd: FleetLoad


@dataclass(frozen=True)
class Check:
    """One system health check: ok, warning or error, and what it looked at."""

    status: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SystemHealth:
    """The checks of the store, the disk and the engine; ``status`` healthy, degraded or unhealthy."""

    status: str
    checks: dict[str, Check]
    version: str = __version__


@dataclass(frozen=True)
class SystemStatus:
    """The box at a glance: the health verdict, the models by state, CPU, memory and disk use, the GPUs."""

    health: SystemHealth
    uptime_s: float
    models: dict[str, int]  # total, and each deployment state (a model with no deployment is stopped)
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    gpu: system.GpuFigures
    version: str = __version__


@dataclass(frozen=True)
class ModelStatusChange:
    """A deployment changed state (``/ws/monitor``'s ``model_status_update``)."""

    model_id: str | None  # the LLM Inference Service API's model-<n>; None once the model is gone
    deployment: DeploymentInfo
    ts: float


# What /ws/monitor may subscribe to -> the broker topics that feed it.
WATCH_TOPICS = {"model_status": "deployment.*", "gpu_metrics": "gpu.*", "system_alerts": "alert.*"}
WatchEvent = tuple[str, "ModelStatusChange | system.GpuReading | AlertEvent"]


class Watch:
    """One subscriber's feed of model status changes, GPU readings and alert events."""

    def __init__(self, monitor: Monitor, subscription: contextlib.AbstractContextManager[Subscription]) -> None:
        self.monitor = monitor
        self._cm = subscription
        self._sub = subscription.__enter__()  # subscribed before any state is read: no change is lost

    def close(self) -> None:
        """Unsubscribe."""
        self._cm.__exit__(None, None, None)

    async def current(self, kinds: Iterable[str]) -> list[WatchEvent]:
        """The state now of ``kinds``: each live deployment, each GPU, each firing alert."""
        kinds, now, out = set(kinds), time.time(), []
        m = self.monitor
        if "model_status" in kinds:
            out += [("model_status", await m._status_change(d.info(), now)) for d in m.fleet.live()]
        if "gpu_metrics" in kinds:
            gpus = await asyncio.to_thread(system.gpus)
            out += [("gpu_metrics", system.GpuReading(now, g)) for g in gpus.devices]
        if "system_alerts" in kinds:
            out += [("system_alerts", AlertEvent(0, r.id, r.name, r.severity, "firing", str(r.condition),
                                                 r.last_value, f"{r.name}: firing since {_clock(r.since)}",
                                                 r.since or now)) for r in m.alerts.firing()]
        return out

    async def next(self, timeout: float) -> WatchEvent | None:
        """The next change, or ``None`` after ``timeout`` seconds of quiet."""
        kinds = {topic.split(".")[0]: kind for kind, topic in WATCH_TOPICS.items()}
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            item = await self._sub.get(timeout=left)
            if item is None:
                return None
            topic, payload = item
            kind = kinds[topic.split(".")[0]]
            if isinstance(payload, DeploymentInfo):
                return kind, await self.monitor._status_change(payload, time.time())
            if isinstance(payload, (system.GpuReading, AlertEvent)):
                return kind, payload
            # other events under these topics (an eviction's note) are not this feed's
        return None


def _clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else "now"


@dataclass(frozen=True)
class ProcessUsage:
    """The process that serves a running deployment: its memory (the model's part) and CPU."""

    process: system.ProcessFigures
    memory_bytes: int  # the model's share: the whole process for an external engine, the measured growth in process
    external: bool
    deployment: DeploymentInfo
    gpu_memory_bytes: int = 0  # what NVML says the process (and its children) holds on the GPUs


class Monitor:
    """Health, status and figures of the daemon, its deployments and the machine."""

    def __init__(self, config: Config, engine_name: str, fleet: Fleet, *, streams: OpenStreams,
                 store_check: Callable[[], Awaitable[bool]], background: Background, auth: Auth,
                 metrics: Metrics, requests: RequestLog, registry: Registry, events: EventBroker,
                 alerts: Alerts, history: History) -> None:
        self.config = config
        self.history = history
        self.events = events
        self.alerts = alerts
        self.registry = registry
        self.engine_name = engine_name
        self.fleet = fleet
        self.streams = streams
        self.store_check = store_check
        self.background = background
        self.auth = auth
        self.metrics = metrics
        self.requests = requests

    async def health(self) -> Health:
        """Health in core terms: the store, the default model, open streams."""
        dep = self.fleet.default()
        loaded = dep is not None and dep.state is DeploymentState.RUNNING
        store_ok = await self.store_check()
        budget = memory.budget(self.config.deployments.memory_budget_mb)
        stopping = self.background.stopping
        if stopping or not store_ok or (dep is not None and dep.state is DeploymentState.ERROR):
            status = "error"
        elif not loaded:
            status = "model_not_loaded"
        else:
            status = "ok"
        return Health(
            status=status, model_loaded=loaded, default_model=self.config.models.default, store_ok=store_ok,
            shutting_down=stopping, uptime_s=round(self.background.uptime_s, 3),
            active_streams=self.streams.active, deployments=[d.info() for d in self.fleet.live()],
            auth=self.auth.describe(), process_rss_bytes=psutil.Process().memory_info().rss,
            memory_total_bytes=psutil.virtual_memory().total, memory_budget_bytes=budget.host,
            memory_budget_source=budget.reason)

    async def status(self) -> Status:
        """Everything ``llmctl status`` shows."""
        health = await self.health()
        cfg = self.config
        return Status(version=__version__, pid=os.getpid(), engine=self.engine_name, health=health,
                      memory_rss_bytes=health.process_rss_bytes, requests=await self.requests.totals(),
                      state_dir=str(cfg.state_dir), socket=str(cfg.socket_path) if cfg.socket_path else None,
                      listen=f"{cfg.server.host}:{cfg.server.port}")

    async def resources(self) -> system.SystemResources:
        """CPU, memory, disk (of the models directory) and GPUs."""
        return await asyncio.to_thread(system.resources, self.config.models_dir)

    async def load(self) -> SystemLoad:
        """The machine's load averages and CPU use, and llmd's deployments, generations and streams."""
        machine = await asyncio.to_thread(system.machine_load)
        infos = [d.info() for d in self.fleet.live()]
        return SystemLoad(machine, FleetLoad(
            deployments_running=sum(1 for i in infos if i.running),
            generations_active=sum(i.active for i in infos), generations_queued=sum(i.queued for i in infos),
            active_streams=self.streams.active))

    async def system_health(self) -> SystemHealth:
        """Checks of the store, the free disk of the models directory and the engine."""
        checks: dict[str, Check] = {}
        store_ok = await self.store_check()
        checks["store"] = Check("ok" if store_ok else "error", {"path": str(self.config.db_path)})
        margin = self.config.downloads.disk_margin_mb * (1 << 20)
        models_dir = self.config.models_dir
        try:
            du = await asyncio.to_thread(system.disk, Path(models_dir))
            checks["disk"] = Check("ok" if du.free_bytes >= margin else "warning",
                                   {"path": str(models_dir), "free_bytes": du.free_bytes, "margin_bytes": margin})
        except OSError as exc:
            checks["disk"] = Check("error", {"path": str(models_dir), "message": exc.strerror or "unreadable"})
        dep = self.fleet.default()
        state = dep.state if dep is not None else DeploymentState.STOPPED
        checks["engine"] = Check(
            "error" if state is DeploymentState.ERROR or self.background.stopping else "ok",
            {"engine": self.engine_name, "default_model": self.config.models.default,
             "default_model_state": state.value,
             "deployments_running": sum(1 for d in self.fleet.live() if d.state is DeploymentState.RUNNING)})
        states = {c.status for c in checks.values()}
        status = "unhealthy" if "error" in states else "degraded" if "warning" in states else "healthy"
        return SystemHealth(status, checks)

    async def system_status(self) -> SystemStatus:
        """The health verdict, the models by state, the machine's use and the GPUs (sampled in threads)."""
        health = await self.system_health()
        res = await asyncio.to_thread(system.resources, self.config.models_dir)
        states = {d.model.name: d.state.value for d in self.fleet.live()}
        names = [m.name for m in await self.registry.list()]
        models = {"total": len(names), **{s.value: 0 for s in DeploymentState}}
        for name in names:
            models[states.get(name, DeploymentState.STOPPED.value)] += 1
        return SystemStatus(health, round(self.background.uptime_s, 3), models, res.cpu.usage_percent,
                            res.memory.usage_percent, res.disk.usage_percent, res.gpu)

    async def gpus(self) -> system.GpuFigures:
        """Every GPU through NVML (utilization, memory, temperature, power, processes), read in a thread;
        none, with a ``reason``, when there is no driver."""
        return await asyncio.to_thread(system.gpus)

    def watch(self) -> Watch:
        """A feed for ``/ws/monitor``: :meth:`Watch.current` is the state now, :meth:`Watch.next` each change
        after the feed was opened. Close it when done."""
        return Watch(self, self.events.subscribe(*WATCH_TOPICS.values()))

    async def _status_change(self, info: DeploymentInfo, ts: float) -> ModelStatusChange:
        model = await self.registry.find(info.model)
        return ModelStatusChange(model.external_id if model is not None else None, info, ts)

    async def usage(self, dep: Deployment | None) -> ProcessUsage | None:
        """The memory and CPU of the process serving a running deployment (sampled over 0.1 s in a thread)."""
        if dep is None or dep.state is not DeploymentState.RUNNING or dep.pid is None:
            return None
        external = dep.kind != "llama.cpp"
        figures, gpus = await asyncio.gather(asyncio.to_thread(system.process_tree, dep.pid, external),
                                             asyncio.to_thread(system.gpus))
        if figures is None:
            return None
        # The in-process engine shares the daemon's process: the model's part is what its load and use were
        # measured to add (core/memory.py); an external engine's process is all the model's.
        measured = dep.memory_measured()
        memory = figures.rss_bytes if external or measured is None else measured.total
        pids = set(figures.pids) if figures.pids else {dep.pid}
        gpu_memory = sum(p.memory_bytes or 0 for g in gpus.devices for p in g.processes if p.pid in pids)
        return ProcessUsage(figures, memory, external, dep.info(), gpu_memory)

    def metrics_text(self) -> bytes:
        """The Prometheus text: event metrics plus live figures read now (microseconds of /proc reads)."""
        proc = psutil.Process()
        cpu = proc.cpu_times()
        vm = psutil.virtual_memory()
        h, counters = self.history, self.alerts.counters
        return self.metrics.render(LiveState(
            active_connections=self.streams.active, deployments=[d.info() for d in self.fleet.live()],
            process_cpu_seconds=float(cpu.user + cpu.system), process_rss_bytes=int(proc.memory_info().rss),
            system_memory_total_bytes=int(vm.total), system_memory_available_bytes=int(vm.available),
            box=dict(h.last_values), box_ts=h.last_ts, monitor_samples=h.samples, monitor_failures=h.failures,
            monitor_sample_seconds=h.last_sample_s,
            firing=[(r.id, r.name, r.severity) for r in self.alerts.firing()],
            notifications_sent=dict(counters.sent), notifications_failed=dict(counters.failed)))
