"""llmd.core.metrics: event metrics, scrape-time metrics, and the text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from llmd.core.deployment import DeploymentInfo
from llmd.core.metrics import INFERENCE_BUCKETS, LiveState, Metrics, request_status
from llmd.core.types import DeploymentState, FinishReason, GenerationResult, Timings, Usage


def result(reason=FinishReason.STOP, prompt=5, completion=7, ttft=0.2, duration=2.0, model="m") -> GenerationResult:
    return GenerationResult(text="x", finish_reason=reason, usage=Usage(prompt, completion),
                            timings=Timings(ttft_s=ttft, duration_s=duration), model=model)


def parse(m: Metrics, live: LiveState | None = None) -> tuple[dict, dict]:
    text = m.render(live or LiveState()).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {}
    for f in families.values():
        for s in f.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, values


def test_request_status():
    assert request_status(result(FinishReason.STOP)) == "ok"
    assert request_status(result(FinishReason.LENGTH)) == "length"
    assert request_status(result(FinishReason.CANCELLED)) == "cancelled"
    assert request_status(result(FinishReason.ERROR)) == "error"


def test_observe_request():
    m = Metrics()
    m.observe_request({"dialect": "api_v1", "endpoint": "/api/v1/generate"}, result(duration=2.0))
    m.observe_request({"dialect": "api_v1"}, result(FinishReason.LENGTH, duration=4.0, completion=3))
    m.observe_request({"dialect": "openai"}, result(duration=0.3, model="other"))
    m.observe_request({}, result(FinishReason.CANCELLED, completion=0, duration=0.1))
    families, v = parse(m)
    assert families["model_inference_seconds"].type == "histogram"
    assert v[("model_inference_seconds_bucket", (("le", "1.0"),))] == 2
    assert v[("model_inference_seconds_bucket", (("le", "3.0"),))] == 3
    assert v[("model_inference_seconds_bucket", (("le", "5.0"),))] == 4
    assert v[("model_inference_seconds_count", ())] == 4
    assert abs(v[("model_inference_seconds_sum", ())] - 6.4) < 1e-9
    assert v[("llmd_requests_total", (("dialect", "api_v1"), ("model", "m"), ("status", "ok")))] == 1
    assert v[("llmd_requests_total", (("dialect", "api_v1"), ("model", "m"), ("status", "length")))] == 1
    assert v[("llmd_requests_total", (("dialect", "openai"), ("model", "other"), ("status", "ok")))] == 1
    assert v[("llmd_requests_total", (("dialect", "core"), ("model", "m"), ("status", "cancelled")))] == 1
    assert v[("llmd_prompt_tokens_total", (("model", "m"),))] == 15
    assert v[("llmd_completion_tokens_total", (("model", "m"),))] == 10
    # no first token, no TTFT sample
    assert v[("llmd_time_to_first_token_seconds_count", (("model", "m"),))] == 2
    assert v[("llmd_time_to_first_token_seconds_count", (("model", "other"),))] == 1


def test_document_buckets_and_names():
    assert {1.0, 3.0, 5.0} <= set(INFERENCE_BUCKETS)
    text = Metrics().render(LiveState(active_connections=23)).decode()
    assert "# TYPE model_inference_seconds histogram" in text
    assert "# TYPE active_connections gauge" in text
    assert "\nactive_connections 23.0\n" in text
    assert "_created" not in text


def test_instances_do_not_share_figures():
    a, b = Metrics(), Metrics()
    a.observe_request({"dialect": "api_v1"}, result())
    assert parse(a)[1][("model_inference_seconds_count", ())] == 1
    assert parse(b)[1][("model_inference_seconds_count", ())] == 0
    assert a.registry is not b.registry


def test_live_families():
    live = LiveState(
        active_connections=2,
        deployments=[DeploymentInfo("deploy_1", "m", DeploymentState.RUNNING, queued=3, active=1, queue_size=16,
                                    completed=9, slots=4),
                     DeploymentInfo("deploy_2", "n", DeploymentState.STARTING, queue_size=16)],
        process_cpu_seconds=1.5, process_rss_bytes=100, system_memory_total_bytes=1000,
        system_memory_available_bytes=400)
    families, v = parse(Metrics(), live)
    assert v[("active_connections", ())] == 2
    assert v[("llmd_queue_length", (("model", "m"),))] == 3
    assert v[("llmd_queue_capacity", (("model", "m"),))] == 16
    assert v[("llmd_active_slots", (("model", "m"),))] == 1
    assert v[("llmd_slots", (("model", "m"),))] == 4
    assert ("llmd_slots", (("model", "n"),)) not in v  # a deployment that does not say has no sample
    assert v[("llmd_model_loaded", (("model", "m"),))] == 1
    assert v[("llmd_model_loaded", (("model", "n"),))] == 0
    assert v[("llmd_model_state", (("model", "n"), ("state", "starting")))] == 1
    assert v[("llmd_model_state", (("model", "n"), ("state", "running")))] == 0
    assert v[("llmd_deployment_completed_requests_total", (("model", "m"),))] == 9
    assert families["llmd_process_cpu_seconds"].type == "counter"
    assert v[("llmd_process_cpu_seconds_total", ())] == 1.5
    assert v[("llmd_process_resident_memory_bytes", ())] == 100
    assert v[("llmd_system_memory_total_bytes", ())] == 1000
    assert v[("llmd_system_memory_available_bytes", ())] == 400


def test_rate_limited_counter():
    m = Metrics()
    m.observe_rate_limited("api_v1")
    m.observe_rate_limited("api_v1")
    assert parse(m)[1][("llmd_rate_limited_requests_total", (("dialect", "api_v1"),))] == 2


async def test_live_figures_come_from_the_core_and_the_process(fake_core):
    release = fake_core.streams.acquire("addr:10.0.0.9")
    try:
        text = fake_core.monitor.metrics_text().decode()
    finally:
        release()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["active_connections"].samples[0].value == 1
    queued = [s for s in families["llmd_queue_length"].samples if s.labels == {"model": "tiny"}]
    assert queued and queued[0].value == 0
    assert families["llmd_process_resident_memory_bytes"].samples[0].value > 0
    assert families["llmd_system_memory_total_bytes"].samples[0].value > \
        families["llmd_process_resident_memory_bytes"].samples[0].value
    assert families["llmd_process_cpu_seconds"].samples[0].value > 0
