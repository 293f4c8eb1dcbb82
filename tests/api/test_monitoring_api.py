"""The LLM Inference Service API's GET /api/monitoring/metrics, from the metrics history."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmd.http import create_app

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, on every bucket boundary up to the hour


@pytest.fixture
async def app(core_factory):
    core = await core_factory(**{"monitor.interval_s": 0})
    # three samples in the first minute, one in the next, through the real sampler (psutil figures)
    for dt in (0, 20, 40, 60):
        await core.history.sample_once(now=T0 + dt)
    return core, create_app(core)


async def get(app, query: str):
    r = await app.test_client().get(f"/api/monitoring/metrics?{query}")
    return r.status_code, json.loads(await r.get_data(as_text=True))


async def test_minute_buckets_of_cpu_with_a_summary(app):
    core, app = app
    status, body = await get(app, "start_time=2027-01-15T08:00:00Z&end_time=2027-01-15T08:05:00Z"
                                  "&metric_type=cpu&interval=1m")
    assert status == 200, body
    assert [m["timestamp"] for m in body["metrics"]] == ["2027-01-15T08:00:00Z", "2027-01-15T08:01:00Z"]
    assert set(body["metrics"][0]) == {"timestamp", "cpu_percent", "load_1m"}
    assert all(0 <= m["cpu_percent"] <= 100 for m in body["metrics"])
    s = body["summary"]
    assert s["max_cpu_percent"] >= s["avg_cpu_percent"] >= 0
    assert s["avg_response_time"] is None  # no request finished in the window
    assert body["interval"] == "1m" and body["start_time"] == "2027-01-15T08:00:00Z"


async def test_the_default_types_and_mib(app):
    core, app = app
    status, body = await get(app, "start_time=2027-01-15T07:00:00&end_time=2027-01-15T09:00:00&interval=1h")
    assert status == 200, body
    (bucket,) = body["metrics"]  # naive times are UTC; one hour bucket
    assert bucket["timestamp"] == "2027-01-15T08:00:00Z"
    assert {"cpu_percent", "memory_percent", "memory_used"} <= set(bucket)
    assert 1 < bucket["memory_used"] < 1 << 30  # MiB, not bytes


async def test_per_model_figures(app):
    core, app = app
    status, body = await get(app, "start_time=2027-01-15T08:00:00Z&end_time=2027-01-15T08:02:00Z"
                                  "&metric_type=model&interval=5m")
    assert status == 200, body
    (bucket,) = body["metrics"]
    assert bucket["models"] == [{"model_name": "tiny", "queue_depth": 0.0, "active_slots": 0.0,
                                 "tokens_per_second": 0.0}]


@pytest.mark.parametrize("query, field", [
    ("start_time=2027-01-15T09:00:00Z&end_time=2027-01-15T08:00:00Z", "start_time"),
    ("interval=2m", "interval"),
    ("metric_type=network", "metric_type"),
    ("start_time=yesterday", "start_time"),
    ("start_time=2020-01-01T00:00:00Z&end_time=2027-01-15T08:00:00Z&interval=1m", "interval"),
    # years the answer could not write (0000 once +14:00 is taken off, 10000 once -14:00 is added)
    ("start_time=0001-01-01T00:00:00%2B14:00&end_time=0001-01-02T00:00:00Z&interval=1d", "start_time"),
    ("start_time=9999-12-30T00:00:00Z&end_time=9999-12-31T23:59:59-14:00&interval=1d", "start_time"),
    ("start_time=1969-12-31T23:00:00Z&end_time=1970-01-01T01:00:00Z", "start_time"),
])
async def test_bad_queries_are_400_naming_the_field(app, query, field):
    core, app = app
    status, body = await get(app, query)
    assert status == 400, body
    assert set(body) == {"error", "timestamp", "path"} and body["path"] == "/api/monitoring/metrics"
    assert field in json.dumps(body["error"])


async def test_an_unknown_monitoring_path_is_this_apis_404(app):
    core, app = app
    r = await app.test_client().get("/api/monitoring/nothing")
    body = json.loads(await r.get_data(as_text=True))
    assert r.status_code == 404 and set(body) == {"error", "timestamp", "path"}


# -- GET /api/monitoring/performance --------------------------------------------------------

async def test_performance_per_model_from_the_request_log(core_factory):
    import time

    from llmd.core.types import GenerateRequest, SamplingParams

    core = await core_factory(**{"monitor.interval_s": 0})
    await core.history.sample_once()  # the box's figures for the system averages
    for _ in range(3):
        gen = await core.inference.generate(GenerateRequest(prompt="hi", params=SamplingParams(max_tokens=3)))
        await gen.collect_or_raise()
    app = create_app(core).test_client()
    deadline = time.monotonic() + 5
    while True:  # the request log is written in the background
        r = await app.get("/api/monitoring/performance?time_range=1h")
        body = json.loads(await r.get_data(as_text=True))
        if body["models"] and body["models"][0]["total_requests"] == 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert r.status_code == 200, body
    (m,) = body["models"]
    assert m["model_name"] == "tiny" and m["model_id"].startswith("model-")
    assert (m["total_requests"], m["successful_requests"], m["failed_requests"], m["error_rate"]) == (3, 3, 0, 0)
    assert 0 <= m["min_response_time"] <= m["avg_response_time"] <= m["max_response_time"]
    assert m["requests_per_second"] == pytest.approx(3 / 3600, abs=1e-3)
    assert body["time_range"] == "1h" and 0 <= body["system"]["avg_cpu_percent"] <= 100
    assert body["system"]["avg_memory_percent"] > 0

    # one model by id: the same figures; an unknown model: 404 in this API's envelope
    r = await app.get(f"/api/monitoring/performance?model_id={m['model_id']}&time_range=24h")
    assert [x["total_requests"] for x in json.loads(await r.get_data(as_text=True))["models"]] == [3]
    r = await app.get("/api/monitoring/performance?model_id=nope")
    body = json.loads(await r.get_data(as_text=True))
    assert r.status_code == 404 and body["error"]["code"] == "MODEL_NOT_FOUND" and "path" in body
    r = await app.get("/api/monitoring/performance?time_range=2h")
    assert r.status_code == 400 and "time_range" in await r.get_data(as_text=True)
