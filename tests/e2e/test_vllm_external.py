"""The ``vllm`` framework: llmd supervises an external OpenAI-compatible server and proxies every dialect to it.

A second llmd process stands in for vLLM (it speaks the same ``/v1`` API and
answers ``/health``); the test registers it with ``config.command``. Also: the
clear error when the engine's program is not installed, and the child dying
with the daemon.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest
from daemonproc import DaemonProcess
from helpers import parse_sse
from opstasks import wait_task

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="llmd-vllm-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(root) -> Iterator[DaemonProcess]:
    # The supervising daemon loads nothing itself: the model runs in the stand-in.
    (root / "main").mkdir()
    d = DaemonProcess(root / "main", args=["--no-load"]).start()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{d.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.2)
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def http(daemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def external(http, root) -> dict:
    """A vllm model whose engine is a second llmd on the bundled model; started."""
    (root / "engine.toml").write_text("")
    command = (f"{shlex.quote(sys.executable)} -m llmd --config {shlex.quote(str(root / 'engine.toml'))}"
               f" --host 127.0.0.1 --port {{port}} --state-dir {shlex.quote(str(root / 'engine'))}"
               " --socket none --set engine.n_ctx={max_model_len}")
    r = http.post("/api/models", json={"name": "ext-llm", "framework": "vllm", "config": {
        "model_path": "smollm2-135m-instruct", "command": command, "n_ctx": 1024}})
    assert r.status_code == 201, r.text
    created = r.json()
    task = wait_task(http, http.post(f"/api/models/{created['id']}/start", json={"timeout": 150}).json()["task_id"])
    assert task["status"] == "completed", task
    return created


def test_started_engine(http, external):
    m = http.get(f"/api/models/{external['id']}").json()
    assert m["framework"] == "vllm" and m["status"] == "running" and m["health"] == "healthy"
    usage = m["resource_usage"]
    assert usage["process"] == "external" and usage["pid"] != http.get("/llmd/v1/status").json()["pid"]
    assert usage["memory"] >= 50  # the stand-in holds the model
    logs = [e["message"] for e in http.get(f"/api/models/{external['id']}/logs", params={"lines": 200}).json()["logs"]]
    assert any(m.startswith("started ") and "--set engine.n_ctx=1024" in m for m in logs), logs
    assert any("the engine answers" in m for m in logs) and "state running" in logs


def test_ops_generate_stream_and_not(http, external):
    r = http.post(f"/api/models/{external['id']}/generate",
                  json={"prompt": "1, 2, 3, 4,", "max_tokens": 10, "temperature": 0.0, "top_k": 1, "stop": [" 9"]})
    body = r.json()
    assert r.status_code == 200, body
    assert body["model"] == "ext-llm" and body["choices"][0]["text"].strip()
    assert body["usage"]["prompt_tokens"] > 0 and 0 < body["usage"]["completion_tokens"] <= 10
    r = http.post(f"/api/models/{external['id']}/generate", json={"prompt": "Once upon", "max_tokens": 6,
                                                                  "stream": True})
    events = parse_sse(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks).strip()
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["usage"]["completion_tokens"] == 6


def test_ops_chat_and_embeddings(http, external):
    r = http.post(f"/api/models/{external['id']}/chat/completions",
                  json={"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 12})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].strip()
    r = http.post(f"/api/models/{external['id']}/embeddings", json={"input": ["a", "b"]})
    body = r.json()
    assert r.status_code == 200 and len(body["data"]) == 2 and len(body["data"][0]["embedding"]) > 100


def test_openai_sdk_through_the_proxy(daemon, external):
    client = openai.OpenAI(base_url=f"{daemon.url}/v1", api_key="unused")
    answer = client.chat.completions.create(model="ext-llm", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=8)
    assert answer.choices[0].message.content.strip() and answer.usage.completion_tokens > 0
    stream = client.chat.completions.create(model="ext-llm", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=8, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip()


def test_choices_and_logit_bias_through_the_proxy(daemon, external):
    client = openai.OpenAI(base_url=f"{daemon.url}/v1", api_key="unused", max_retries=0)
    base = {"model": "ext-llm", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    for kw, param in (({"n": 2}, "n"), ({"logprobs": True}, "logprobs")):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(**base, **kw)
        assert e.value.body["param"] == param
    # logit_bias is passed on: the engine (a second llmd here) checks the ids against its vocabulary
    assert client.chat.completions.create(**base, logit_bias={"5": 1}).choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(**base, logit_bias={"999999999": 1})


def test_seed_003_generate_through_the_proxy(http, external):
    r = http.post("/generate", json={"prompt": "Hello", "max_tokens": 8, "model": "ext-llm", "stream": True})
    assert r.status_code == 200
    events = parse_sse(r.text)
    assert events[-1] == "[DONE]" and "".join(events[:-1]).strip()
    r = http.post("/generate", json={"prompt": "Hello", "max_tokens": 8, "model": "ext-llm", "stream": False})
    assert r.status_code == 200, r.text
    assert r.json()["text"].strip() and r.json()["prompt"] == "Hello", r.json()


def test_requests_are_logged_per_model(http, external):
    deadline = time.monotonic() + 10
    while True:
        stats = http.get(f"/api/models/{external['id']}").json()["performance_stats"]
        if stats["total_requests"] >= 7 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert stats["total_requests"] >= 7 and stats["failed_requests"] == 0 and stats["tokens_per_second"] > 0


def test_not_installed_is_a_clear_error(http):
    r = http.post("/api/models", json={"name": "no-vllm", "framework": "vllm", "config": {
        "model_name": "meta-llama/Llama-2-7b-hf", "command": "llmd-test-no-such-vllm serve {model} --port {port}"}})
    assert r.status_code == 201
    task = wait_task(http, http.post("/api/models/no-vllm/start").json()["task_id"])
    assert task["status"] == "failed"
    err = task["error"]
    assert err["code"] == "ENGINE_NOT_INSTALLED"
    assert "llmd-test-no-such-vllm" in err["message"] and "vLLM is not installed" in err["message"]
    m = http.get("/api/models/no-vllm").json()
    assert m["status"] == "error" and "not installed" in m["error"]
    r = http.post("/api/models/no-vllm/generate", json={"prompt": "x"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "MODEL_NOT_RUNNING"
    assert http.delete("/api/models/no-vllm").status_code == 200


def test_stop_ends_the_engine_and_restart_brings_it_back(http, external):
    pid = http.get(f"/api/models/{external['id']}").json()["resource_usage"]["pid"]
    task = wait_task(http, http.post(f"/api/models/{external['id']}/stop").json()["task_id"])
    assert task["status"] == "completed"
    assert not _alive(pid)
    logs = [e["message"] for e in http.get(f"/api/models/{external['id']}/logs", params={"lines": 20}).json()["logs"]]
    assert any(m.startswith("the engine exited with code") for m in logs), logs
    task = wait_task(http, http.post(f"/api/models/{external['id']}/restart").json()["task_id"])
    assert task["status"] == "completed", task
    assert http.get(f"/api/models/{external['id']}").json()["status"] == "running"


def test_engine_dies_with_the_daemon(http, daemon, external):
    """Last in the module: the daemon is killed with SIGKILL; its engine must not outlive it."""
    pid = http.get(f"/api/models/{external['id']}").json()["resource_usage"]["pid"]
    assert _alive(pid)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(30)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting for its reaper is not running any more
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
