"""The metrics history on the real daemon and model: sampled, read over HTTP, kept across a kill -9."""

from __future__ import annotations

import time

import httpx
import pytest
from daemonproc import DaemonProcess

pytestmark = pytest.mark.e2e


def poll(check, timeout: float = 30.0):
    """``check()`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_history_and_performance_over_http_survive_kill_9(short_tmp):
    d = DaemonProcess(short_tmp, env={"LLMD_MONITOR_INTERVAL_S": "0.5"}).start()
    try:
        d.wait_loaded()
        r = httpx.post(f"{d.url}/v1/chat/completions", timeout=60, json={
            "model": "default", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8})
        assert r.status_code == 200, r.text

        def metrics():
            body = httpx.get(f"{d.url}/api/monitoring/metrics", params={"interval": "1m", "metric_type": "model"},
                             timeout=10).json()
            return body if body["metrics"] and body["metrics"][-1].get("models") else None

        body = poll(metrics)
        assert body, "no model figures in the history"
        (model,) = body["metrics"][-1]["models"]
        assert model["model_name"] == "smollm2-135m-instruct" and model["queue_depth"] >= 0

        def throughput():
            body = httpx.get(f"{d.url}/api/monitoring/metrics", params={"interval": "1m", "metric_type": "model"},
                             timeout=10).json()
            return [m for b in body["metrics"] for m in b.get("models", []) if m.get("ttft")]

        (busy, *_) = poll(throughput)  # the minute that held the chat: its tokens per second and first token
        assert busy["tokens_per_second"] > 0 and 0 < busy["ttft"] < 60

        def performance():
            body = httpx.get(f"{d.url}/api/monitoring/performance", params={"time_range": "1h"}, timeout=10).json()
            return body if body["models"] and body["system"]["avg_cpu_percent"] is not None else None

        perf = poll(performance, 60)  # the 5-minute bucket and the request log row are written in the background
        assert perf, "no performance figures"
        (m,) = [x for x in perf["models"] if x["model_name"] == "smollm2-135m-instruct"]
        assert m["total_requests"] >= 1 and m["failed_requests"] == 0 and m["avg_response_time"] > 0

        before = httpx.get(f"{d.url}/api/monitoring/metrics", params={"interval": "1m", "metric_type": "cpu"},
                           timeout=10).json()["metrics"]
        assert before and all(0 <= b["cpu_percent"] <= 100 for b in before)
        d.proc.kill()  # kill -9: no shutdown, a sample may be half way through its transaction
        d.proc.wait()
        d.stop()
        d = DaemonProcess(short_tmp, env={"LLMD_MONITOR_INTERVAL_S": "0.5"}).start()
        d.wait_loaded()
        after = httpx.get(f"{d.url}/api/monitoring/metrics", params={"interval": "1m", "metric_type": "cpu"},
                          timeout=10).json()["metrics"]
        # every bucket from before the kill is still there (a bucket may have grown since)
        assert {b["timestamp"] for b in before} <= {a["timestamp"] for a in after}
    finally:
        d.stop()
