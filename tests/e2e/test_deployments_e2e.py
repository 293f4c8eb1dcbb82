"""Seed 004 deployments on the real daemon and the bundled model: deploy, chat, logs, budget, ports, llmctl."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest
from daemonproc import DaemonProcess, free_port, llmd_bin
from helpers import parse_sse

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m-instruct"
SECOND = "smol-b"
CTX = 512  # small contexts: ~238 MiB each by llmd's estimate (embedding context included): 300 MiB holds one


def _daemon(config: str) -> Iterator[DaemonProcess]:
    root = Path(tempfile.mkdtemp(prefix="llmd-dep-"))
    (root / "llmd.toml").write_text(config)
    d = DaemonProcess(root, args=["--no-load"]).start()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{d.url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert d.proc.poll() is None, d.log()
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.1)
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """A daemon with a 300 MiB budget, the default model not loaded, and a second name for the bundled file."""
    yield from _daemon("[deployments]\nmemory_budget_mb = 300\npin_default = false\n")


@pytest.fixture(scope="module")
def second(daemon: DaemonProcess) -> str:
    models = httpx.get(f"{daemon.url}/llmd/v1/models").json()["models"]
    path = next(m["path"] for m in models if m["name"] == MODEL)
    r = httpx.post(f"{daemon.url}/llmd/v1/models", json={"path": path, "name": SECOND})
    assert r.status_code in (200, 201), r.text
    return SECOND


def api(d: DaemonProcess, method: str, path: str, **kw) -> tuple[int, dict]:
    r = httpx.request(method, f"{d.url}{path}", timeout=120, **kw)
    return r.status_code, r.json()


def start(d: DaemonProcess, model: str, **extra) -> dict:
    status, body = api(d, "POST", "/api/deployments/start",
                       json={"model_id": model, "max_model_len": CTX, "wait": True, **extra})
    assert status in (200, 201) and body["success"], body
    assert body["data"]["status"] == "running", body
    return body["data"]


def get(d: DaemonProcess, dep_id: str) -> dict:
    status, body = api(d, "GET", f"/api/deployments/{dep_id}")
    assert status == 200, body
    return body["data"]


def error(status: int, body: dict, code: str, http: int) -> dict:
    assert status == http and body["success"] is False and body["error"] == code, (status, body)
    assert body["message"] and body["timestamp"]
    return body


def test_deploy_chat_logs_stop_delete(daemon):
    status, body = api(daemon, "POST", "/api/deployments/start",
                       json={"model_id": MODEL, "model_source": "huggingface", "max_model_len": CTX,
                             "gpu_memory_utilization": 0.8})
    assert status == 201 and body["code"] == 201, body
    data = body["data"]
    dep_id = data["deployment_id"]
    assert data["status"] == "starting" and data["model_id"] == MODEL and data["host"] == "127.0.0.1"
    deadline = time.monotonic() + 120
    while get(daemon, dep_id)["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    info = get(daemon, dep_id)
    assert info["gpu_memory_utilization"] == 0.8 and info["max_model_len"] == CTX and info["started_at"]
    assert "no GPU" in (info["note"] or "")  # this box has none: said, not failed

    status, body = api(daemon, "POST", f"/api/chat/{dep_id}",
                       json={"messages": [{"role": "user", "content": "Hello!"}], "stream": False,
                             "temperature": 0.7, "max_tokens": 8, "top_p": 0.9})
    assert status == 200 and body["success"], body
    chat = body["data"]
    assert chat["object"] == "chat.completion" and chat["model"] == MODEL
    assert chat["choices"][0]["message"]["role"] == "assistant" and chat["usage"]["completion_tokens"] >= 1

    r = httpx.post(f"{daemon.url}/api/chat/{dep_id}", timeout=120,
                   json={"messages": [{"role": "user", "content": "Hi"}], "stream": True, "max_tokens": 8})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")

    status, body = api(daemon, "POST", f"/api/completions/{dep_id}",
                       json={"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0})
    assert status == 200 and body["data"]["object"] == "text_completion", body
    r = httpx.post(f"{daemon.url}/api/completions/{dep_id}", timeout=120,
                   json={"prompt": "Once upon a time", "max_tokens": 4, "stream": True})
    events = parse_sse(r.text)
    assert events[-1] == "[DONE]" and json.loads(events[0])["object"] == "text_completion"

    status, body = api(daemon, "GET", f"/api/deployments/{dep_id}/logs", params={"lines": 1000})
    messages = [x["message"] for x in body["data"]["logs"]]
    assert any(m.startswith("llama.cpp: llama_model_loader") for m in messages), messages[:20]
    assert "state running" in messages
    status, body = api(daemon, "GET", f"/api/deployments/{dep_id}/health")
    assert body["data"]["status"] == "healthy"
    status, body = api(daemon, "GET", f"/api/deployments/{dep_id}/model-info")
    assert body["data"]["model_id"] == MODEL and body["data"]["chat_supported"] is True

    status, body = api(daemon, "PUT", f"/api/deployments/{dep_id}/stop")
    assert status == 200 and body["data"]["status"] == "stopped"
    error(*api(daemon, "PUT", f"/api/deployments/{dep_id}/stop"), "INVALID_ACTION", 409)
    error(*api(daemon, "POST", f"/api/chat/{dep_id}", json={"messages": [{"role": "user", "content": "x"}]}),
          "DEPLOYMENT_NOT_RUNNING", 409)
    # the log outlives the deployment
    status, body = api(daemon, "GET", f"/api/deployments/{dep_id}/logs", params={"lines": 5})
    assert body["data"]["logs"][-1]["message"] == "state stopped"
    status, body = api(daemon, "DELETE", f"/api/deployments/{dep_id}")
    assert status == 200 and body["data"]["deleted"] is True
    error(*api(daemon, "GET", f"/api/deployments/{dep_id}"), "DEPLOYMENT_NOT_FOUND", 404)


def test_budget_eviction_and_insufficient_resources(daemon, second):
    a = start(daemon, MODEL)
    b = start(daemon, second)  # the budget holds one: the idle, unpinned first one goes
    evicted = get(daemon, a["deployment_id"])
    assert evicted["status"] == "stopped" and evicted["stop_reason"] == "evicted"
    assert f"make room for '{second}'" in evicted["note"]
    _, body = api(daemon, "GET", f"/api/deployments/{a['deployment_id']}/logs", params={"lines": 20})
    assert any("evicted to make room" in x["message"] for x in body["data"]["logs"])
    _, body = api(daemon, "GET", f"/api/deployments/{b['deployment_id']}/logs", params={"lines": 1000})
    assert any(f"evicted '{MODEL}'" in x["message"] for x in body["data"]["logs"])

    pinned = start(daemon, MODEL, pinned=True)  # evicts the second in turn
    assert pinned["pinned"] is True and pinned["deployment_id"] == a["deployment_id"]  # the id is stable
    body = error(*api(daemon, "POST", "/api/deployments/start", json={"model_id": second, "max_model_len": CTX}),
                 "INSUFFICIENT_RESOURCES", 503)
    figures = body["details"]
    assert figures["budget_mb"] == 300.0 and figures["needed_mb"] > 150
    (held,) = figures["deployments"]
    assert held == {"model": MODEL, "deployment_id": a["deployment_id"], "state": "running",
                    "memory_mb": held["memory_mb"], "estimate_mb": held["estimate_mb"],
                    "measured_mb": held["measured_mb"], "pinned": True, "idle": True}
    # what the budget counts is the larger of the estimate and the measurement
    assert held["memory_mb"] == max(held["estimate_mb"], held["measured_mb"]) and held["measured_mb"] > 0
    api(daemon, "PUT", f"/api/deployments/{a['deployment_id']}/stop")


def test_port_bound_deployment_answers_the_openai_client(daemon, second):
    port = free_port()
    data = start(daemon, second, port=port)
    assert data["port"] == port
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=120)
    assert [m.id for m in client.models.list().data] == [second]
    answer = client.chat.completions.create(model="anything-else", max_tokens=5,
                                            messages=[{"role": "user", "content": "Say hi"}])
    assert answer.model == second and answer.choices[0].message.content is not None
    stream = client.chat.completions.create(model=MODEL, max_tokens=5, stream=True,
                                            messages=[{"role": "user", "content": "Say hi"}])
    assert {c.model for c in stream} == {second}
    assert httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 404  # only /v1/ there
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models/{second}").json()["id"] == second
    other = httpx.get(f"http://127.0.0.1:{port}/v1/models/{MODEL}")  # registered, but not served on this port
    assert other.status_code == 404 and other.json()["error"]["code"] == "model_not_found"
    # a port that something else holds is a 409 that says so
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        body = error(*api(daemon, "POST", "/api/deployments/start",
                          json={"model_id": MODEL, "max_model_len": CTX, "port": busy.getsockname()[1]}),
                     "CONFLICT", 409)
        assert "in use" in body["message"]
    api(daemon, "PUT", f"/api/deployments/{data['deployment_id']}/stop")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models")


def test_seed_001_load_and_seed_004_start_are_one_deployment(daemon, second):
    first = start(daemon, second)
    r = httpx.post(f"{daemon.url}/api/v1/models/{second}/load", json={}, timeout=120)
    assert r.status_code == 200, r.text  # joins the running deployment
    status, body = api(daemon, "POST", "/api/deployments/start", json={"model_id": second, "max_model_len": CTX})
    assert status == 200, body  # already running with these settings: the same one, not a new one
    assert body["data"]["deployment_id"] == first["deployment_id"]
    _, listed = api(daemon, "GET", "/api/deployments/list")
    assert [i["model_id"] for i in listed["data"]["items"]].count(second) == 1
    _, running = api(daemon, "GET", "/api/deployments/list", params={"status": "running"})
    assert [i["deployment_id"] for i in running["data"]["items"]] == [body["data"]["deployment_id"]]
    api(daemon, "PUT", f"/api/deployments/{body['data']['deployment_id']}/stop", params={"force": "true"})


def test_error_envelopes(daemon):
    error(*api(daemon, "GET", "/api/deployments/deploy_9999"), "DEPLOYMENT_NOT_FOUND", 404)
    error(*api(daemon, "POST", "/api/deployments/start", json={"model_id": "no/such-model"}), "MODEL_NOT_FOUND", 404)
    error(*api(daemon, "POST", "/api/deployments/start", json={"model_id": MODEL, "model_source": "ftp"}),
          "INVALID_SOURCE", 400)
    body = error(*api(daemon, "POST", "/api/deployments/start", json={"model_id": MODEL, "port": 0}),
                 "INVALID_REQUEST", 400)
    assert "port" in body["message"]
    error(*api(daemon, "GET", "/api/deployments/list", params={"status": "flying"}), "INVALID_REQUEST", 400)
    error(*api(daemon, "POST", "/api/chat/deploy_9999", json={"messages": [{"role": "user", "content": "x"}]}),
          "DEPLOYMENT_NOT_FOUND", 404)


def test_system_routes(daemon):
    _, body = api(daemon, "GET", "/api/health")
    assert body["status"] == "healthy" and body["api_version"] == "v1"
    _, body = api(daemon, "GET", "/api/system/resources")
    assert body["success"] and body["data"]["memory"]["total_gb"] > 0 and body["data"]["cpu"]["cores"] >= 1
    _, body = api(daemon, "GET", "/api/system/load")
    assert body["data"]["load_average"]["1m"] >= 0
    _, body = api(daemon, "GET", "/api/system/health")
    assert body["data"]["status"] in ("healthy", "degraded") and body["data"]["checks"]["store"]["status"] == "ok"


def llmctl(d: DaemonProcess, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMD_", "LLMCTL_"))}
    return subprocess.run([llmd_bin("llmctl"), "--socket", str(d.socket_path), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_llmctl_run_ps_logs_stop(daemon, second):
    p = llmctl(daemon, "run", second, "--ctx", str(CTX))
    assert p.returncode == 0, p.stderr
    assert f"{second} running as deploy_" in p.stdout
    p = llmctl(daemon, "ps")
    assert p.returncode == 0 and second in p.stdout and "running" in p.stdout and "MEMORY" in p.stdout
    p = llmctl(daemon, "logs", second, "-n", "3")
    assert p.returncode == 0 and len(p.stdout.strip().splitlines()) == 3
    follow = subprocess.Popen([llmd_bin("llmctl"), "--socket", str(daemon.socket_path), "logs", second, "-n", "1",
                               "-f"], stdout=subprocess.PIPE, text=True)
    guard = threading.Timer(120, follow.kill)  # a stream that never ends makes readline return '' here
    guard.start()
    try:
        first = follow.stdout.readline()
        assert first.strip()
        assert llmctl(daemon, "stop", second).returncode == 0
        seen = first
        while "state stopped" not in seen:
            line = follow.stdout.readline()
            assert line, "the follow stream ended early"
            seen += line
    finally:
        guard.cancel()
        follow.terminate()
        follow.wait(10)
    p = llmctl(daemon, "ps")
    assert second not in p.stdout
    assert second in llmctl(daemon, "ps", "-a").stdout
    p = llmctl(daemon, "stop", "no-such-model")
    assert p.returncode != 0 and "no deployment" in p.stderr


@pytest.fixture(scope="module")
def idle_daemon() -> Iterator[DaemonProcess]:
    """A daemon whose deployments are unloaded after 1 s idle."""
    yield from _daemon("[deployments]\nkeep_alive_s = 1.0\npin_default = false\n")


def test_idle_unload_after_keep_alive(idle_daemon):
    data = start(idle_daemon, MODEL)
    deadline = time.monotonic() + 60
    while (info := get(idle_daemon, data["deployment_id"]))["status"] != "stopped":
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    assert info["stop_reason"] == "idle" and "keep_alive_s=1" in info["note"]


def _wait_health(d: DaemonProcess) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{d.url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert d.proc.poll() is None, d.log()
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.1)


def test_a_serving_deployment_comes_back_after_a_restart_with_its_port():
    root = Path(tempfile.mkdtemp(prefix="llmd-restore-"))
    (root / "llmd.toml").write_text("")
    d = DaemonProcess(root, args=["--no-load"]).start()
    try:
        _wait_health(d)
        port = free_port()
        data = start(d, MODEL, port=port, pinned=True)
        assert d.stop() == 0
        d = DaemonProcess(root, args=["--no-load"]).start()
        _wait_health(d)
        deadline = time.monotonic() + 120
        while (info := get(d, data["deployment_id"]))["status"] != "running":
            assert info["status"] in ("starting", "stopped"), info
            assert time.monotonic() < deadline, info
            time.sleep(0.2)
        assert info["port"] == port and info["pinned"] is True
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=120)
        assert [m.id for m in client.models.list().data] == [MODEL]
        _, body = api(d, "GET", f"/api/deployments/{data['deployment_id']}/logs", params={"lines": 1000})
        assert "restoring: it was serving" in json.dumps(body)
        # a deployment stopped on purpose stays stopped
        api(d, "PUT", f"/api/deployments/{data['deployment_id']}/stop")
        assert d.stop() == 0
        d = DaemonProcess(root, args=["--no-load"]).start()
        _wait_health(d)  # restores are decided before the daemon listens: a restored one would be starting now
        assert get(d, data["deployment_id"])["status"] == "stopped"
        _, body = api(d, "GET", f"/api/deployments/{data['deployment_id']}/logs", params={"lines": 1000})
        assert json.dumps(body).count("restoring: it was serving") == 1  # only the first restart restored it
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)
