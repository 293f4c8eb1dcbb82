"""Metrics: counters and histograms fed by finished requests, exported as Prometheus text.

Each :class:`Metrics` owns its own ``CollectorRegistry`` (no module-level
registry), so several cores in one process (tests) never share figures.

Two kinds of figures:

- *event* metrics, updated as requests finish (:meth:`Metrics.observe_request`):
  ``model_inference_seconds`` (the API Interface Specification's name and buckets), request counts,
  token counts, time to first token;
- *live* metrics, computed at scrape time from a :class:`LiveState` snapshot
  (built by ``Monitor.metrics_text``): ``active_connections`` (the API Interface Specification's name), queue
  length and busy slots per deployment, model load state, process CPU and
  memory. They are never stale, and nothing has to keep them up to date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llmd.core.types import DeploymentState, GenerationResult

# The text exposition format generate_latest() writes (0.0.4), which every Prometheus reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The API Interface Specification shows buckets le="1", "3", "5"; the rest cover short and long answers.
INFERENCE_BUCKETS = (0.5, 1.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)



def request_status(result: GenerationResult) -> str:
    """The status label of a finished request: ok, length, cancelled, error or shutdown."""
    return result.finish_reason.status


@dataclass(frozen=True)
class LiveState:
    """What the live metrics show, read at scrape time."""

    active_connections: int = 0
    deployments: list[Any] = field(default_factory=list)  # DeploymentInfo of each live deployment
    process_cpu_seconds: float = 0.0
    process_rss_bytes: int = 0
    system_memory_total_bytes: int = 0
    system_memory_available_bytes: int = 0
    box: dict[tuple[str, str], float] = field(default_factory=dict)  # the last sample of the metrics history
    box_ts: float | None = None
    monitor_samples: int = 0
    monitor_failures: int = 0
    monitor_sample_seconds: float = 0.0
    firing: list[tuple[str, str, str]] = field(default_factory=list)  # (rule id, name, severity) firing now
    notifications_sent: dict[str, int] = field(default_factory=dict)
    notifications_failed: dict[str, int] = field(default_factory=dict)


class Metrics:
    """Per-core metrics (no module-level registry: each Core has its own)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.inference_seconds = Histogram(
            "model_inference_seconds", "模型推理耗时 (model inference time: submission to last token), seconds",
            buckets=INFERENCE_BUCKETS, registry=r)
        self.requests = Counter(
            "llmd_requests", "Finished inference requests by dialect, model and status",
            ("dialect", "model", "status"), registry=r)
        self.prompt_tokens = Counter(
            "llmd_prompt_tokens", "Prompt tokens evaluated", ("model",), registry=r)
        self.completion_tokens = Counter(
            "llmd_completion_tokens", "Completion tokens generated", ("model",), registry=r)
        self.prompt_seconds = Counter(
            "llmd_prompt_seconds", "Time spent evaluating prompts (first token minus queueing), seconds",
            ("model",), registry=r)
        self.generation_seconds = Counter(
            "llmd_generation_seconds", "Time spent generating after the first token, seconds", ("model",), registry=r)
        self.ttft_seconds = Histogram(
            "llmd_time_to_first_token_seconds", "Time from submission to the first token, seconds",
            ("model",), buckets=TTFT_BUCKETS, registry=r)
        self.rate_limited = Counter(
            "llmd_rate_limited_requests", "HTTP requests refused with 429 by the rate limiter",
            ("dialect",), registry=r)

    # -- events ---------------------------------------------------------
    def observe_request(self, meta: dict[str, Any], result: GenerationResult) -> None:
        """Record one finished inference request (``meta`` has ``dialect`` and ``endpoint``)."""
        model = result.model or "unknown"
        self.requests.labels(str(meta.get("dialect") or "core"), model, request_status(result)).inc()
        self.prompt_tokens.labels(model).inc(result.usage.prompt_tokens)
        self.completion_tokens.labels(model).inc(result.usage.completion_tokens)
        self.inference_seconds.observe(max(0.0, result.timings.duration_s))
        if result.usage.completion_tokens:
            t = result.timings
            self.ttft_seconds.labels(model).observe(max(0.0, t.ttft_s))
            self.prompt_seconds.labels(model).inc(max(0.0, t.ttft_s - t.queued_s))
            self.generation_seconds.labels(model).inc(max(0.0, t.duration_s - t.ttft_s))

    def observe_rate_limited(self, dialect: str) -> None:
        """Count one request refused by the rate limiter."""
        self.rate_limited.labels(dialect).inc()

    # -- exposition -----------------------------------------------------
    def render(self, live: LiveState) -> bytes:
        """Prometheus text (format 0.0.4): the event metrics plus ``live``'s figures."""
        registry = self.registry

        class _View:
            def collect(self) -> Iterator[Metric]:
                for family in registry.collect():
                    # *_created samples (creation timestamps) only add noise to the text format.
                    family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                    yield family
                yield from live_families(live)

        return generate_latest(_View())  # type: ignore[arg-type]


def live_families(live: LiveState) -> Iterable[Metric]:
    """The scrape-time metric families of ``live``."""
    active = GaugeMetricFamily("active_connections", "活跃连接数 (open SSE streams and WebSockets)")
    active.add_metric([], live.active_connections)
    yield active

    queued = GaugeMetricFamily("llmd_queue_length", "Requests waiting per deployment", labels=["model"])
    capacity = GaugeMetricFamily("llmd_queue_capacity", "Queue bound per deployment", labels=["model"])
    slots = GaugeMetricFamily("llmd_active_slots", "Generations running per deployment", labels=["model"])
    total_slots = GaugeMetricFamily("llmd_slots", "Sequence slots per deployment (parallel generations)",
                                    labels=["model"])
    loaded = GaugeMetricFamily("llmd_model_loaded", "1 when the deployment is running", labels=["model"])
    state = GaugeMetricFamily("llmd_model_state", "Deployment state (1 for the current one)",
                              labels=["model", "state"])
    completed = CounterMetricFamily("llmd_deployment_completed_requests",
                                    "Requests finished by the current deployment of each model", labels=["model"])
    # llama-server's names for the same figures, so its dashboards carry over
    processing = GaugeMetricFamily("llmd_requests_processing", "Requests generating now", labels=["model"])
    deferred = GaugeMetricFamily("llmd_requests_deferred", "Requests waiting for a slot", labels=["model"])
    kv_tokens = GaugeMetricFamily("llmd_kv_cache_tokens", "KV-cache cells in use (running and cached prompts)",
                                  labels=["model"])
    kv_ratio = GaugeMetricFamily("llmd_kv_cache_usage_ratio", "KV-cache cells in use over the cells there are",
                                 labels=["model"])
    mem_est = GaugeMetricFamily("llmd_deployment_memory_estimate_bytes",
                                "Memory the deployment was estimated to hold before its load (host and GPU)",
                                labels=["model"])
    mem_meas = GaugeMetricFamily("llmd_deployment_memory_measured_bytes",
                                 "Memory the deployment was measured to add since its load (host and GPU)",
                                 labels=["model"])
    mem_placed = GaugeMetricFamily("llmd_deployment_memory_budgeted_bytes",
                                   "What the memory budget counts: the larger of estimate and measurement",
                                   labels=["model"])
    for d in live.deployments:
        model = str(d.model)
        if d.memory_estimate:
            mem_est.add_metric([model], d.memory_estimate["total"])
        if d.memory_measured:
            mem_meas.add_metric([model], d.memory_measured["total"])
        mem_placed.add_metric([model], d.memory_bytes)
        processing.add_metric([model], d.active)
        deferred.add_metric([model], d.queued)
        kv_used, kv_cap = d.scheduler.get("kv_cache_tokens"), d.scheduler.get("kv_cache_capacity")
        if kv_used is not None:
            kv_tokens.add_metric([model], kv_used)
            if kv_cap:
                kv_ratio.add_metric([model], kv_used / kv_cap)
        queued.add_metric([model], d.queued)
        capacity.add_metric([model], d.queue_size)
        slots.add_metric([model], d.active)
        if d.slots:  # unknown until the engine says
            total_slots.add_metric([model], d.slots)
        loaded.add_metric([model], 1 if d.state is DeploymentState.RUNNING else 0)
        for s in DeploymentState:
            state.add_metric([model, s.value], 1 if d.state is s else 0)
        completed.add_metric([model], d.completed)
    yield from (queued, capacity, slots, total_slots, loaded, state, completed, processing, deferred, kv_tokens,
                kv_ratio, mem_est, mem_meas, mem_placed)
    yield from box_families(live)

    cpu = CounterMetricFamily("llmd_process_cpu_seconds", "CPU time of the llmd process (user + system)")
    cpu.add_metric([], live.process_cpu_seconds)
    rss = GaugeMetricFamily("llmd_process_resident_memory_bytes", "Resident memory of the llmd process")
    rss.add_metric([], live.process_rss_bytes)
    total = GaugeMetricFamily("llmd_system_memory_total_bytes", "Physical memory of the machine")
    total.add_metric([], live.system_memory_total_bytes)
    avail = GaugeMetricFamily("llmd_system_memory_available_bytes", "Memory available to new processes")
    avail.add_metric([], live.system_memory_available_bytes)
    yield from (cpu, rss, total, avail)


# The box's figures of the metrics history's last sample: metric -> (family, help, label of the subject).
BOX_GAUGES = {
    "cpu_percent": ("llmd_system_cpu_percent", "CPU use of the machine at the last sample, percent", None),
    "memory_percent": ("llmd_system_memory_percent", "Memory use of the machine at the last sample, percent", None),
    "disk_percent": ("llmd_system_disk_percent", "Use of the models' file system at the last sample, percent", None),
    "load_1m": ("llmd_system_load1", "One-minute load average at the last sample", None),
    "gpu_utilization": ("llmd_gpu_utilization_percent", "GPU utilization at the last sample, percent", "gpu"),
    "gpu_memory_used_bytes": ("llmd_gpu_memory_used_bytes", "GPU memory in use at the last sample", "gpu"),
    "gpu_temperature": ("llmd_gpu_temperature_celsius", "GPU temperature at the last sample", "gpu"),
    "gpu_power_w": ("llmd_gpu_power_watts", "GPU power draw at the last sample", "gpu"),
}


def box_families(live: LiveState) -> Iterable[Metric]:
    """The monitor's figures: the last sample, the sampler's own counts, firing alerts, notifications."""
    for metric, (name, help_text, label) in BOX_GAUGES.items():
        family = GaugeMetricFamily(name, help_text, labels=[label] if label else None)
        for (m, subject), value in sorted(live.box.items()):
            if m == metric:
                family.add_metric([subject] if label else [], value)
        yield family
    samples = CounterMetricFamily("llmd_monitor_samples", "Samples written to the metrics history")
    samples.add_metric([], live.monitor_samples)
    failures = CounterMetricFamily("llmd_monitor_sample_failures", "Samples of the metrics history that failed")
    failures.add_metric([], live.monitor_failures)
    took = GaugeMetricFamily("llmd_monitor_sample_seconds", "How long the last sample took (reads and write)")
    took.add_metric([], live.monitor_sample_seconds)
    firing = GaugeMetricFamily("llmd_alerts_firing", "1 for each alert rule firing now",
                               labels=["alert_id", "rule_name", "severity"])
    for rule_id, name, severity in live.firing:
        firing.add_metric([rule_id, name, severity], 1)
    notified = CounterMetricFamily("llmd_alert_notifications", "Alert notifications by channel and outcome",
                                   labels=["channel", "outcome"])
    for outcome, counts in (("sent", live.notifications_sent), ("failed", live.notifications_failed)):
        for channel, n in sorted(counts.items()):
            notified.add_metric([channel, outcome], n)
    yield from (samples, failures, took, firing, notified)
