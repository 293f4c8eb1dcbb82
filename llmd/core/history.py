"""The metrics history: the box and its deployments, sampled every ``monitor.interval_s`` into SQLite.

Each sample (CPU, memory, disk, load, this process, each GPU, each running
deployment's queue and slots, each model's tokens per second and time to first
token since the last sample) is one transaction of the store's
``metrics`` repository, which also rolls it up into 1 m, 5 m, 1 h and 1 d
buckets. The blocking reads (psutil, NVML) run in a thread; the writes go
through aiosqlite's thread: the event loop never waits on either. Once an
hour each resolution is pruned to its retention. After each sample the GPUs'
figures are published (``/ws/monitor``'s ``gpu_metrics_update``) and the alert
rules are evaluated on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Sequence

from llmd.config import MonitorConfig
from llmd.core import system
from llmd.core.alerts import Alerts
from llmd.core.background import Background
from llmd.core.events import EventBroker
from llmd.core.fleet import Fleet
from llmd.core.registry import Registry
from llmd.core.requestlog import RequestLog, RequestStats
from llmd.core.types import DeploymentState
from llmd.errors import ValidationError
from llmd.store.metrics import RAW, MetricPoint, MetricsRepo

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
RECENT_S = 300.0  # the request-log window of the alert figures error_rate, response_time, requests_per_second
Sample = dict[tuple[str, str], float]
Pruner = Callable[[float], Awaitable[int]]  # drops what is too old at a Unix time; how many
# The buckets a window can be read in; "raw" is every sample as taken (kept monitor.keep_raw_h).
INTERVALS = {"raw": RAW, "1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
# The longest window of raw samples (at the shortest monitor.interval_s, 0.1 s, 72,000 samples a field): twice
# the last hour that a dashboard shows, so that "an hour ago" read a moment later is still inside it.
MAX_RAW_WINDOW_S = 7200.0
# What a metric type shows: field -> (stored metric, how the subjects are combined: "box", "mean" or "sum").
FIELDS = {
    "cpu": {"cpu_percent": ("cpu_percent", "box"), "load_1m": ("load_1m", "box")},
    "memory": {"memory_percent": ("memory_percent", "box"), "memory_used": ("memory_used_bytes", "box"),
               "process_memory": ("process_rss_bytes", "box")},
    "gpu": {"gpu_utilization": ("gpu_utilization", "mean"), "gpu_memory_used": ("gpu_memory_used_bytes", "sum")},
    "disk": {"disk_percent": ("disk_percent", "box"), "disk_used": ("disk_used_bytes", "box")},
    "model": {"queue_depth": ("queue_depth", "sum"), "active_slots": ("active_slots", "sum"),
              "tokens_per_second": ("tokens_per_second", "sum"), "ttft": ("ttft_s", "mean"),
              "engine_memory": ("engine_rss_bytes", "sum")},
}
# Shown in MiB, as the document's example does.
BYTES_FIELDS = ("memory_used", "gpu_memory_used", "process_memory", "engine_memory", "disk_used")
MAX_BUCKETS = 10_000
# The performance report's ranges.
TIME_RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


@dataclass(frozen=True)
class MetricsRow:
    """One bucket of a window: its start and each field's average over the bucket (None: not sampled)."""

    ts: float
    values: dict[str, float | None]
    models: dict[str, dict[str, float]] = field(default_factory=dict)  # metric type "model": per model


@dataclass(frozen=True)
class MetricsWindow:
    """The history between two times, in one interval's buckets, with averages and maxima."""

    start: float
    end: float
    interval: str
    rows: list[MetricsRow]
    summary: dict[str, float | None]


@dataclass(frozen=True)
class ModelPerformance:
    """One model's requests over a time range."""

    model_id: str | None  # the LLM Inference Service API's id (model-<n>); None once the model is gone
    model_name: str
    stats: RequestStats


@dataclass(frozen=True)
class Performance:
    """Requests per model over a time range, and the box's averages from the history."""

    time_range: str
    models: list[ModelPerformance]
    system: dict[str, float | None]


def _combine(points_by_subject: dict[str, list[MetricPoint]], how: str) -> dict[float, tuple[float, float]]:
    """Bucket start -> (average, maximum) over the subjects: the box's own, their mean, or their sum."""
    per_ts: dict[float, list[MetricPoint]] = {}
    for points in points_by_subject.values():
        for p in points:
            per_ts.setdefault(p.ts, []).append(p)
    out = {}
    for ts, ps in per_ts.items():
        if how == "sum":
            out[ts] = (sum(p.avg for p in ps), sum(p.max for p in ps))
        else:  # "box" has one subject; "mean" averages the GPUs
            out[ts] = (sum(p.avg for p in ps) / len(ps), max(p.max for p in ps))
    return out


def read_box(models_dir: Path, engines: dict[str, int] | None = None) -> tuple[Sample, system.GpuFigures]:
    """The machine's figures, ``(metric, subject) -> value``, and the GPUs as read (blocking: psutil, NVML);
    ``engines`` (model -> pid of an external engine) adds each engine's resident memory."""
    res = system.resources(models_dir)
    load = system.machine_load()
    out: Sample = {
        ("cpu_percent", ""): res.cpu.usage_percent,
        ("memory_used_bytes", ""): float(res.memory.used_bytes),
        ("memory_percent", ""): res.memory.usage_percent,
        ("disk_used_bytes", ""): float(res.disk.used_bytes),
        ("disk_percent", ""): res.disk.usage_percent,
        ("load_1m", ""): load.load_1m,
        ("process_rss_bytes", ""): float(load.process.rss_bytes),
    }
    for gpu in res.gpu.devices:
        subject = f"gpu{gpu.index}"
        out[("gpu_memory_used_bytes", subject)] = float(gpu.memory_used_bytes)
        # A figure the board does not report (utilization in MIG mode, power on some boards) is left out
        # of the sample rather than stored as a made-up zero.
        for metric, value in (("gpu_utilization", gpu.utilization_percent), ("gpu_temperature", gpu.temperature_c),
                              ("gpu_power_w", gpu.power_usage_w)):
            if value is not None:
                out[(metric, subject)] = float(value)
    for model, pid in (engines or {}).items():
        rss = system.tree_rss(pid)
        if rss is not None:
            out[("engine_rss_bytes", model)] = float(rss)
    return out, res.gpu


def observe(values: Sample, gpus: system.GpuFigures, recent: dict[str, float]) -> dict[str, float]:
    """The figures alert rules are written against (llmd.core.alerts.METRICS), from one sample, the GPUs
    as read and the request log's last minutes (``recent``). A figure nobody measured is left out."""
    obs = {name: values[(name, "")] for name in ("cpu_percent", "memory_percent", "disk_percent", "load_1m")
           if (name, "") in values}
    for name, figures in (("gpu_utilization", [g.utilization_percent for g in gpus.devices]),
                          ("gpu_temperature", [g.temperature_c for g in gpus.devices]),
                          ("gpu_power_usage", [g.power_usage_w for g in gpus.devices]),
                          ("gpu_memory_percent", [g.memory_used_bytes / g.memory_total_bytes * 100
                                                  for g in gpus.devices if g.memory_total_bytes])):
            known = [f for f in figures if f is not None]
            if known:
                obs[name] = max(known)  # the busiest, hottest, fullest GPU
    obs["queue_depth"] = sum(v for (m, _), v in values.items() if m == "queue_depth")
    obs["active_slots"] = sum(v for (m, _), v in values.items() if m == "active_slots")
    obs.update(recent)
    return obs


class History:
    """Samples into the metrics history on a timer, and prunes it."""

    def __init__(self, config: MonitorConfig, repo: MetricsRepo, fleet: Fleet, background: Background,
                 models_dir: Path, requests: RequestLog, registry: Registry, *, events: EventBroker,
                 alerts: Alerts | None = None, pruners: Sequence[Pruner] = ()) -> None:
        self.config = config  # read at every tick: a changed interval applies from the next sample
        self.events = events
        self.alerts = alerts
        # Other components' retention (stored responses): pruned on the same hourly timer, so that
        # one job, not one timer per store, keeps the database bounded.
        self.pruners = tuple(pruners)
        self.repo = repo
        self.requests = requests
        self.registry = registry
        self.fleet = fleet
        self.background = background
        self.models_dir = models_dir
        self.samples = 0
        self.failures = 0
        self.last_sample_s = 0.0  # how long the last sample took (reads and write)
        self.last_values: Sample = {}  # the last sample written (for /metrics)
        self.last_ts: float | None = None
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()  # set when monitor.interval_s changes: the next sample is timed anew
        self._last_prune = float("-inf")  # the first sample prunes

    def start(self) -> None:
        """Begin sampling (the first sample at once); ``monitor.interval_s`` 0 keeps no history."""
        if self._task is None and self.config.interval_s > 0:
            self._task = self.background.spawn(self._run())

    def reschedule(self) -> None:
        """``monitor.interval_s`` changed at run time: start, stop, or re-time the sampling."""
        if self.config.interval_s > 0 and self._task is None:
            self.start()
        elif self.config.interval_s <= 0 and self._task is not None:
            self._task.cancel()
            self._task = None
        else:
            self._wake.set()

    async def stop(self) -> None:
        """Stop sampling; a sample being written is finished or rolled back, never half-written."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def deployment_values(self) -> Sample:
        """Each running deployment's queue and busy slots."""
        out: Sample = {}
        for dep in self.fleet.live():
            info = dep.info()
            if info.state is not DeploymentState.RUNNING:
                continue
            # by model name: the APIs name models, and a model keeps its name across restarts
            out[("queue_depth", info.model)] = float(info.queued)
            out[("active_slots", info.model)] = float(info.active)
            out[("tokens_per_second", info.model)] = 0.0  # until throughput() finds finished requests
        return out

    async def _by_subject(self, metric: str, resolution: int, start: float, end: float) -> dict[str, list[MetricPoint]]:
        """Every subject's buckets of ``metric`` between ``start`` and ``end``."""
        subjects = await self.repo.subjects(metric, resolution=resolution, start=start, end=end)
        return {s: await self.repo.points(metric, s, resolution=resolution, start=start, end=end) for s in subjects}

    async def performance(self, time_range: str, model: str | None = None, now: float | None = None) -> Performance:
        """Each model's requests over the last ``time_range`` (one model: its name, alias or id) and the
        box's average CPU, memory and GPU use over it, from the 5-minute buckets of the history."""
        end = time.time() if now is None else now
        start = end - TIME_RANGES[time_range]
        name = (await self.registry.get(model, field="model_id")).name if model is not None else None
        ids = {m.name: m.external_id for m in await self.registry.list()}
        stats = await self.requests.window_by_model(start, end, name)
        if name is not None and name not in stats:
            stats[name] = RequestStats()  # asked for by name: shown with zero requests
        system: dict[str, float | None] = {}
        for field_name, metric, how in (("avg_cpu_percent", "cpu_percent", "box"),
                                        ("avg_memory_percent", "memory_percent", "box"),
                                        ("avg_gpu_utilization", "gpu_utilization", "mean")):
            series = _combine(await self._by_subject(metric, 300, start - 300, end), how)
            system[field_name] = sum(a for a, _ in series.values()) / len(series) if series else None
        models = [ModelPerformance(ids.get(n), n, s) for n, s in sorted(stats.items())]
        return Performance(time_range, models, system)

    async def window(self, *, start: float | None, end: float | None, metric_type: str | None,
                     interval: str) -> MetricsWindow:
        """The history in ``interval`` buckets from ``start`` to ``end`` (default: the last hour up to now):
        the fields of ``metric_type`` (all of cpu, memory and gpu when None), their averages and maxima
        over the window, and the mean response time of the requests that finished in it."""
        step = INTERVALS[interval]
        end = time.time() if end is None else end
        start = end - 3600 if start is None else start
        if start > end:
            raise ValidationError("start_time must not be after end_time", field="start_time")
        if step == RAW and end - start > MAX_RAW_WINDOW_S:
            raise ValidationError(f"raw samples are read over at most {MAX_RAW_WINDOW_S / 3600:g} hours: "
                                  "ask for an interval or a shorter window", field="interval")
        if step != RAW and (end - start) / step > MAX_BUCKETS:
            raise ValidationError(f"the window holds more than {MAX_BUCKETS} buckets of {interval}: "
                                  "ask for a larger interval or a shorter window", field="interval")
        types = [metric_type] if metric_type else ["cpu", "memory", "gpu"]
        first = start - start % step if step != RAW else start  # the bucket that holds start
        values: dict[str, dict[float, tuple[float, float]]] = {}
        models: dict[float, dict[str, dict[str, float]]] = {}
        for t in types:
            for name, (metric, how) in FIELDS[t].items():
                by_subject = await self._by_subject(metric, step, first, end)
                values[name] = _combine(by_subject, how)
                if t == "model":
                    for subject, points in by_subject.items():
                        for p in points:
                            models.setdefault(p.ts, {}).setdefault(subject, {})[name] = p.avg
        scale = {name: 1 / (1 << 20) if name in BYTES_FIELDS else 1.0 for name in values}
        stamps = sorted({ts for series in values.values() for ts in series})
        rows = [MetricsRow(ts, {name: series[ts][0] * scale[name] if ts in series else None
                                for name, series in values.items()}, models.get(ts, {}))
                for ts in stamps]
        summary: dict[str, float | None] = {}
        for name, series in values.items():
            avgs = [a for a, _ in series.values()]
            summary[f"avg_{name}"] = sum(avgs) / len(avgs) * scale[name] if avgs else None
            summary[f"max_{name}"] = max(m for _, m in series.values()) * scale[name] if avgs else None
        summary["avg_response_time"] = await self.requests.average_response_s(start, end)
        return MetricsWindow(start, end, interval, rows, summary)

    async def sample_once(self, now: float | None = None) -> Sample:
        """Take one sample and write it, publish each GPU's figures (``gpu.<index>``) and evaluate the
        alert rules on it; returns what was written."""
        started = time.monotonic()
        ts = time.time() if now is None else now
        engines = {d.model.name: d.pid for d in self.fleet.live()
                   if d.kind != "llama.cpp" and d.pid is not None and d.state is DeploymentState.RUNNING}
        values, gpus = await asyncio.to_thread(read_box, self.models_dir, engines)
        values.update(self.deployment_values())
        values.update(await self.throughput(self.last_ts if self.last_ts is not None else ts - self.config.interval_s,
                                            ts))
        await self.repo.add_sample(ts, values)
        self.samples += 1
        self.last_values, self.last_ts = values, ts
        for device in gpus.devices:
            self.events.publish(f"gpu.{device.index}", system.GpuReading(ts, device))
        if self.alerts is not None:
            await self.alerts.evaluate(observe(values, gpus, await self.recent_requests(ts)), ts)
        self.last_sample_s = time.monotonic() - started
        return values

    async def throughput(self, start: float, end: float) -> Sample:
        """Per model with requests that finished since the last sample: completion tokens per second over
        the interval, and the mean time to first token (s)."""
        out: Sample = {}
        if end <= start:
            return out
        for name, stats in (await self.requests.window_by_model(start, end)).items():
            out[("tokens_per_second", name)] = stats.tokens_per_second
            if stats.avg_ttft_s is not None:
                out[("ttft_s", name)] = stats.avg_ttft_s
        return out

    async def recent_requests(self, now: float) -> dict[str, float]:
        """``error_rate``, ``requests_per_second`` and ``response_time`` (mean seconds) of the requests that
        finished in the last ``RECENT_S`` (no requests: no response time, and no errors)."""
        stats = await self.requests.window_by_model(now - RECENT_S, now)
        total = sum(s.requests for s in stats.values())
        out = {"error_rate": sum(s.failed for s in stats.values()) / total if total else 0.0,
               "requests_per_second": total / RECENT_S}
        mean = await self.requests.average_response_s(now - RECENT_S, now)
        if mean is not None:
            out["response_time"] = mean
        return out

    async def prune(self, now: float | None = None) -> int:
        """Drop what is older than each resolution's retention (0: kept forever), alert history older
        than ``alerts.keep_history_d``, and what each of ``pruners`` drops."""
        c = self.config
        keep = {RAW: c.keep_raw_h * 3600, 60: c.keep_1m_d * 86400, 300: c.keep_5m_d * 86400,
                3600: c.keep_1h_d * 86400, 86400: c.keep_1d_d * 86400}
        now = time.time() if now is None else now
        removed = await self.repo.prune({res: s for res, s in keep.items() if s > 0}, now)
        if self.alerts is not None:
            removed += await self.alerts.prune_history(self.alerts.config.keep_history_d, now)
        for pruner in self.pruners:
            removed += await pruner(now)
        return removed

    async def _run(self) -> None:
        while not self.background.stopping:
            try:
                await self.sample_once()
                if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
                    self._last_prune = time.monotonic()
                    await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed sample is logged and counted; the next one comes
                self.failures += 1
                log.exception("metrics sample failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.1, self.config.interval_s))
            except TimeoutError:
                pass
