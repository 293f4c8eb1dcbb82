"""Seed 002's model lifecycle on the real daemon and the real model, over TCP.

create -> start task -> generate (stream and not, stop, top_k) -> chat/completions -> embeddings -> logs
(llama.cpp's own lines, follow by SSE) -> stop -> delete; deleting a running model; llmctl rm.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from daemonproc import DaemonProcess, llmd_bin
from opstasks import wait_task

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    root = Path(tempfile.mkdtemp(prefix="llmd-ops-"))
    d = DaemonProcess(root).start()
    try:
        d.wait_loaded()
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def http(daemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def bundled_path(http) -> str:
    m = http.get("/api/models/smollm2-135m-instruct").json()
    return m["config"]["model_path"]


def sse_data(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.startswith("data: "):
            yield line[6:]


@pytest.fixture(scope="module")
def model(http, bundled_path) -> dict:
    r = http.post("/api/models", json={
        "name": "ops-e2e", "display_name": "我的模型", "framework": "llama.cpp", "priority": 5,
        "config": {"model_path": bundled_path, "n_ctx": 1024, "n_threads": 2, "temperature": 0.7},
        "resource_requirements": {"cpu_cores": 2}, "tags": ["e2e"]})
    assert r.status_code == 201, r.text
    created = r.json()
    r = http.post(f"/api/models/{created['id']}/start", json={"force": False, "timeout": 120})
    assert r.status_code == 202
    task = wait_task(http, r.json()["task_id"])
    assert task["status"] == "completed", task
    assert task["result"]["settings"]["n_ctx"] == 1024  # the model's own config applies
    return created


def test_created_model_runs(http, model):
    m = http.get(f"/api/models/{model['id']}").json()
    assert m["name"] == "ops-e2e" and m["status"] == "running" and m["health"] == "healthy"
    assert m["display_name"] == "我的模型" and m["architecture"] == "llama" and m["tags"] == ["e2e"]
    usage = m["resource_usage"]
    assert usage["memory"] >= 50 and usage["process_memory"] >= usage["memory"] and usage["pid"] > 0
    listed = http.get("/api/models", params={"status": "running", "framework": "llama.cpp"}).json()
    assert "ops-e2e" in [i["name"] for i in listed["items"]]


def test_generate_non_stream_with_stop_and_top_k(http, model):
    r = http.post(f"/api/models/{model['id']}/generate",
                  json={"prompt": "1, 2, 3, 4, 5,", "max_tokens": 24, "temperature": 0.0, "top_k": 1,
                        "stop": [" 8"]})
    assert r.status_code == 200, r.text
    body = r.json()
    choice = body["choices"][0]
    assert body["model"] == "ops-e2e" and choice["index"] == 0 and body["id"].startswith("gen-")
    assert choice["text"].strip() and " 8" not in choice["text"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_generate_stream(http, model):
    pieces = []
    with http.stream("POST", f"/api/models/{model['id']}/generate",
                     json={"prompt": "Tell me a story", "max_tokens": 12, "stream": True, "top_k": 40}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_data(r.iter_lines()))
    assert events[-1] == "[DONE]"
    for e in events[:-1]:
        chunk = json.loads(e)
        assert chunk["id"].startswith("gen-") and chunk["choices"][0]["index"] == 0
        pieces.append(chunk["choices"][0]["text"])
    assert "".join(pieces).strip()
    last = json.loads(events[-2])
    # sampled text may end at the end-of-text token before the budget runs out
    used, reason = last["usage"]["completion_tokens"], last["choices"][0]["finish_reason"]
    assert 0 < used <= 12 and reason in ("stop", "length")
    assert (used == 12) == (reason == "length"), (used, reason)


def test_chat_completions_and_embeddings(http, model):
    r = http.post(f"/api/models/{model['id']}/chat/completions", json={
        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "Hello!"}], "max_tokens": 16, "temperature": 0.7})
    body = r.json()
    assert r.status_code == 200 and body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"].strip() and body["usage"]["completion_tokens"] > 0
    with http.stream("POST", f"/api/models/{model['id']}/chat/completions", json={
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "stream": True}) as r:
        events = list(sse_data(r.iter_lines()))
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]).strip()

    r = http.post(f"/api/models/{model['id']}/embeddings",
                  json={"input": ["Hello world", "How are you?"], "encoding_format": "float"})
    body = r.json()
    assert r.status_code == 200 and len(body["data"]) == 2 and body["usage"]["prompt_tokens"] > 0
    assert len(body["data"][0]["embedding"]) == len(body["data"][1]["embedding"]) > 100


def test_performance_stats_from_the_request_log(http, model):
    deadline = time.monotonic() + 10
    while True:
        stats = http.get(f"/api/models/{model['id']}").json()["performance_stats"]
        if stats["total_requests"] >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert stats["total_requests"] >= 4 and stats["failed_requests"] == 0 and stats["error_rate"] == 0.0
    assert 0 < stats["min_response_time"] <= stats["avg_response_time"] <= stats["max_response_time"]
    assert stats["tokens_per_second"] > 0 and stats["requests_per_second"] > 0


def test_logs_hold_llama_cpp_lines(http, model):
    logs = http.get(f"/api/models/{model['id']}/logs", params={"lines": 500}).json()["logs"]
    messages = [e["message"] for e in logs]
    assert "state running" in messages
    assert any("llama" in m.lower() and "deployment" not in m for m in messages), messages[:40]
    assert all(e["timestamp"].endswith("Z") and e["level"] in ("DEBUG", "INFO", "WARNING", "ERROR") for e in logs)
    last3 = http.get(f"/api/models/{model['id']}/logs", params={"lines": 3}).json()["logs"]
    assert [e["message"] for e in last3] == messages[-3:]


def test_follow_logs_then_stop(http, daemon, model):
    got: list[dict] = []
    seen_tail = threading.Event()
    seen_new = threading.Event()

    def follow() -> None:
        with httpx.Client(base_url=daemon.url, timeout=60) as c:
            with c.stream("GET", f"/api/models/{model['id']}/logs", params={"lines": 2, "follow": "true"}) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                for data in sse_data(r.iter_lines()):
                    got.append(json.loads(data))
                    if len(got) == 2:
                        seen_tail.set()
                    if got[-1]["message"].startswith("state stopp"):
                        seen_new.set()
                        return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    assert seen_tail.wait(30)
    r = http.post(f"/api/models/{model['id']}/stop", json={"force": False, "timeout": 60})
    task = wait_task(http, r.json()["task_id"])
    assert task["status"] == "completed" and task["result"]["was_running"] is True
    assert seen_new.wait(30), got
    t.join(10)
    assert got[-1]["level"] == "INFO" and len(got) >= 3
    m = http.get(f"/api/models/{model['id']}").json()
    assert m["status"] == "stopped" and m["resource_usage"] == {}
    # a request loads it on demand (deployments.load_on_demand); stopped again for the tests below
    r = http.post(f"/api/models/{model['id']}/generate", json={"prompt": "x", "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert http.get(f"/api/models/{model['id']}").json()["status"] == "running"
    r = http.post(f"/api/models/{model['id']}/stop", json={"force": True, "timeout": 60})
    assert wait_task(http, r.json()["task_id"])["status"] == "completed"
    # a stopped model's logs are still there
    assert http.get(f"/api/models/{model['id']}/logs", params={"lines": 5}).json()["logs"]


def test_delete_stopped_model_keeps_the_users_file(http, model, bundled_path):
    r = http.delete(f"/api/models/{model['id']}")
    assert r.status_code == 200 and r.json()["file_removed"] is False
    assert Path(bundled_path).exists()
    r = http.get(f"/api/models/{model['id']}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "MODEL_NOT_FOUND"


def test_delete_running_needs_force(http, bundled_path):
    created = http.post("/api/models", json={"name": "ops-del", "config": {"model_path": bundled_path,
                                                                             "n_ctx": 512}}).json()
    task = wait_task(http, http.post(f"/api/models/{created['id']}/start").json()["task_id"])
    assert task["status"] == "completed", task
    r = http.delete(f"/api/models/{created['id']}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"
    assert http.get(f"/api/models/{created['id']}").json()["status"] == "running"
    r = http.delete(f"/api/models/{created['id']}", params={"force": "true"})
    assert r.status_code == 200
    assert http.get(f"/api/models/{created['id']}").status_code == 404
    assert "ops-del" not in [m["name"] for m in http.get("/api/models").json()["items"]]
    # the deployment was stopped and unloaded, not just forgotten
    live = http.get("/api/deployments/list").json()["data"]["items"]
    assert "ops-del" not in [d["model_id"] for d in live if d["status"] in ("starting", "running")], live
    status = http.get("/llmd/v1/status").json()
    assert "ops-del" not in json.dumps(status.get("deployments", status)), status


def test_llmctl_rm(http, daemon, bundled_path):
    http.post("/api/models", json={"name": "ops-rm", "config": {"model_path": bundled_path, "n_ctx": 512}})
    assert wait_task(http, http.post("/api/models/ops-rm/start").json()["task_id"])["status"] == "completed"
    llmctl = [llmd_bin("llmctl"), "--socket", str(daemon.socket_path)]
    p = subprocess.run([*llmctl, "rm", "ops-rm"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "force" in p.stderr, p.stderr
    p = subprocess.run([*llmctl, "rm", "ops-rm", "--force"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "deleted ops-rm" in p.stdout, p.stderr
    p = subprocess.run([*llmctl, "rm", "ops-rm"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "ops-rm" in p.stderr
    assert Path(bundled_path).exists()
