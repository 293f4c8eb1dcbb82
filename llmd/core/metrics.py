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
            self.ttft_seconds.labels(model).observe(max(0.0, result.timings.ttft_s))

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
    for d in live.deployments:
        model = str(d.model)
        queued.add_metric([model], d.queued)
        capacity.add_metric([model], d.queue_size)
        slots.add_metric([model], d.active)
        if d.slots:  # unknown until the engine says
            total_slots.add_metric([model], d.slots)
        loaded.add_metric([model], 1 if d.state is DeploymentState.RUNNING else 0)
        for s in DeploymentState:
            state.add_metric([model, s.value], 1 if d.state is s else 0)
        completed.add_metric([model], d.completed)
    yield from (queued, capacity, slots, total_slots, loaded, state, completed)

    cpu = CounterMetricFamily("llmd_process_cpu_seconds", "CPU time of the llmd process (user + system)")
    cpu.add_metric([], live.process_cpu_seconds)
    rss = GaugeMetricFamily("llmd_process_resident_memory_bytes", "Resident memory of the llmd process")
    rss.add_metric([], live.process_rss_bytes)
    total = GaugeMetricFamily("llmd_system_memory_total_bytes", "Physical memory of the machine")
    total.add_metric([], live.system_memory_total_bytes)
    avail = GaugeMetricFamily("llmd_system_memory_available_bytes", "Memory available to new processes")
    avail.add_metric([], live.system_memory_available_bytes)
    yield from (cpu, rss, total, avail)
