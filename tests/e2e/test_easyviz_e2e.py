"""Seed 000 (EasyVizAI) against the real daemon and the bundled model.

The document's own clients run here: its Python requests example (exec'd as
written, URL pointed at the test daemon) and its JavaScript fetch-streaming and
WebSocket examples under Node 20 (tests/e2e/js/). The document's model name
``qwen`` is not one llmd ships, so the ``qwen_daemon`` registers the bundled
GGUF under that name through the admin API and loads it with the document's own
load route, as an admin of such a box would.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from daemonproc import DaemonProcess

websockets_sync = pytest.importorskip("websockets.sync.client")

pytestmark = pytest.mark.e2e

API = "/api/v1/llm"
JS = Path(__file__).parent / "js"
NODE = shutil.which("node")


# -- helpers -----------------------------------------------------------------------

def ws_url(daemon: DaemonProcess, session: str) -> str:
    return daemon.url.replace("http://", "ws://") + f"/ws/chat/{session}/"


def recv(ws, timeout: float = 120) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def recv_until(ws, types=("assistant_done", "assistant_message", "error"), timeout: float = 120) -> list[dict]:
    out = []
    while True:
        msg = recv(ws, timeout)
        out.append(msg)
        if msg["type"] in types:
            return out


def chat(daemon: DaemonProcess, session: str, message: str, **extra: Any) -> dict[str, Any]:
    """One streamed WebSocket turn; returns the closing message."""
    with websockets_sync.connect(ws_url(daemon, session), open_timeout=10) as ws:
        ws.send(json.dumps({"type": "chat_message", "message": message, **extra}))
        msgs = recv_until(ws)
    assert msgs[-1]["type"] == "assistant_done", msgs[-1]
    return msgs[-1]


def db_rows(daemon: DaemonProcess, sql: str, params: tuple = ()) -> list[dict]:
    db = sqlite3.connect(f"file:{daemon.state_dir / 'llmd.db'}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(sql, params)]
    finally:
        db.close()


def wait_engine_idle(daemon: DaemonProcess, timeout: float = 5) -> float:
    """Seconds until ``/health`` shows no active or queued generation."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        deps = httpx.get(f"{daemon.url}/health", timeout=5).json()["details"]["deployments"]
        if deps and all(d["active"] == 0 and d["queued"] == 0 for d in deps):
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"the engine did not become idle in {timeout}s")


def wait_request_row(daemon: DaemonProcess, after_id: int, timeout: float = 5) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = db_rows(daemon, "SELECT * FROM request_log WHERE id > ? ORDER BY id", (after_id,))
        if rows:
            return rows[-1]
        time.sleep(0.05)
    raise AssertionError("no request_log row was written")


def last_request_id(daemon: DaemonProcess) -> int:
    rows = db_rows(daemon, "SELECT COALESCE(MAX(id), 0) AS id FROM request_log")
    return rows[0]["id"]


def history(daemon: DaemonProcess, session: str) -> list[dict]:
    return db_rows(daemon, "SELECT role, content, status, model, prompt_tokens FROM chat_messages"
                           " WHERE session_id=? ORDER BY id", (session,))


@pytest.fixture(scope="module")
def qwen_daemon() -> Iterator[DaemonProcess]:
    """A daemon of its own where the bundled model is also registered, and loaded, as ``qwen``."""
    root = Path(tempfile.mkdtemp(prefix="llmd-e2e-"))
    d = DaemonProcess(root).start()
    try:
        d.wait_loaded()
        bundled = httpx.get(f"{d.url}/llmd/v1/models", timeout=10).json()["models"][0]
        r = httpx.post(f"{d.url}/llmd/v1/models", json={"path": bundled["path"], "name": "qwen"}, timeout=30)
        assert r.status_code == 201, r.text
        r = httpx.post(f"{d.url}{API}/models/qwen/load/", timeout=120)
        assert r.status_code == 200, r.text
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- every route ---------------------------------------------------------------------

def test_health_and_models(daemon):
    h = httpx.get(f"{daemon.url}{API}/health/", timeout=10)
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "healthy"
    assert body["current_model"] == "smollm2-135m-instruct"
    assert body["current_model"] in body["loaded_models"]
    assert body["device"] in ("cpu", "cuda")
    deps = httpx.get(f"{daemon.url}/health").json()["details"]["deployments"]
    assert body["device"] == next(d["device"] for d in deps if d["model"] == body["current_model"])

    m = httpx.get(f"{daemon.url}{API}/models/", timeout=10).json()
    assert m["current_model"] == body["current_model"]
    assert body["current_model"] in m["available_models"]
    assert m["aliases"]["default"] == body["current_model"]

    for key in (body["current_model"], "default"):
        detail = httpx.get(f"{daemon.url}{API}/models/{key}/", timeout=10)
        assert detail.status_code == 200
        d = detail.json()
        assert d["name"] == body["current_model"] and d["loaded"] is True
        assert d["config"]["model_path"].endswith(".gguf") and d["config"]["device"] == body["device"]

    missing = httpx.get(f"{daemon.url}{API}/models/qwen/", timeout=10)
    assert missing.status_code == 404
    assert set(missing.json()) == {"error"}
    assert "available models: " in missing.json()["error"] and body["current_model"] in missing.json()["error"]


def test_generate_and_stream(daemon):
    r = httpx.post(f"{daemon.url}{API}/generate/", timeout=120, json={
        "prompt": "Say hello.", "model": "default", "parameters": {"max_length": 16, "do_sample": False}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["response"] and body["model"] == "smollm2-135m-instruct" and body["prompt"] == "Say hello."
    assert body["usage"]["completion_tokens"] <= 16
    # (greedy reruns are not compared: a reused KV-cache prefix shifts llama.cpp's numerics slightly)

    with httpx.stream("POST", f"{daemon.url}{API}/generate/stream/", timeout=120,
                      json={"prompt": "用中文写一句关于春天的话。", "parameters": {"max_length": 24}}) as s:
        assert s.status_code == 200
        assert s.headers["content-type"].startswith("text/event-stream")
        raw = s.read().decode("utf-8")  # never broken UTF-8
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    assert events[-1]["done"] is True
    assert all("chunk" in e for e in events[:-1]) and "".join(e["chunk"] for e in events[:-1])


@pytest.mark.parametrize("params,field", [({"max_length": 4097}, "parameters.max_length"),
                                          ({"temperature": 2.5}, "parameters.temperature"),
                                          ({"top_p": 1.5}, "parameters.top_p")])
def test_out_of_range_is_400(daemon, params, field):
    r = httpx.post(f"{daemon.url}{API}/generate/", json={"prompt": "hi", "parameters": params}, timeout=10)
    assert r.status_code == 400
    assert set(r.json()) == {"error"} and field in r.json()["error"]


def test_unknown_model_is_404_not_rerouted(daemon):
    before = last_request_id(daemon)
    r = httpx.post(f"{daemon.url}{API}/generate/", json={"prompt": "hi", "model": "qwen"}, timeout=10)
    assert r.status_code == 404
    assert "smollm2-135m-instruct" in r.json()["error"]
    assert last_request_id(daemon) == before  # nothing was generated


def test_load_and_unload_change_the_engine(qwen_daemon):
    d = qwen_daemon

    def state() -> tuple[list[str], list[str]]:
        deps = httpx.get(f"{d.url}/health", timeout=10).json()["details"]["deployments"]
        loaded = httpx.get(f"{d.url}{API}/health/", timeout=10).json()["loaded_models"]
        return [x["model"] for x in deps], loaded

    assert "qwen" in state()[0] and "qwen" in state()[1]
    r = httpx.post(f"{d.url}{API}/models/qwen/unload/", timeout=60)
    assert r.status_code == 200 and r.json()["message"] == "Model qwen unloaded successfully"
    deps, loaded = state()
    assert "qwen" not in deps and "qwen" not in loaded and "smollm2-135m-instruct" in loaded
    assert httpx.get(f"{d.url}{API}/models/qwen/", timeout=10).json()["loaded"] is False
    # a request for it loads it again on demand (deployments.load_on_demand), then it is unloaded again
    r = httpx.post(f"{d.url}{API}/generate/", json={"prompt": "hi", "model": "qwen", "parameters": {"max_length": 4}},
                   timeout=120)
    assert r.status_code == 200, r.text
    assert "qwen" in state()[0]
    assert httpx.post(f"{d.url}{API}/models/qwen/unload/", timeout=60).status_code == 200
    assert "qwen" not in state()[0]

    r = httpx.post(f"{d.url}{API}/models/qwen/load/", timeout=120)
    assert r.status_code == 200 and r.json()["message"] == "Model qwen loaded successfully"
    deps, loaded = state()
    assert "qwen" in deps and "qwen" in loaded
    assert httpx.get(f"{d.url}{API}/models/qwen/", timeout=10).json()["loaded"] is True


# -- the document's own clients ---------------------------------------------------------

PYTHON_EXAMPLE = '''\
import requests
import json

# 检查服务状态
response = requests.get('http://localhost:8000/api/v1/llm/health/')
print(response.json())

# 生成文本
data = {
    "prompt": "请写一首关于春天的诗",
    "model": "qwen",
    "parameters": {
        "temperature": 0.8,
        "max_length": 256
    }
}

response = requests.post(
    'http://localhost:8000/api/v1/llm/generate/',
    json=data
)
print(response.json()['response'])
'''


def test_document_python_example(qwen_daemon):
    code = PYTHON_EXAMPLE.replace("http://localhost:8000", qwen_daemon.url)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "seed000_python_example", "exec"), {"__name__": "__main__"})
    lines = out.getvalue().splitlines()
    health = eval(lines[0])  # noqa: S307 - the example prints a dict's repr
    assert health["status"] == "healthy" and "qwen" in health["loaded_models"]
    assert "".join(lines[1:]).strip()  # the poem


@pytest.fixture(scope="module")
def node() -> str:
    if NODE is None:
        pytest.skip("node is not installed")
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
    major, minor = (int(x) for x in version.lstrip("v").split(".")[:2])
    assert (major, minor) >= (20, 10), f"the examples need Node >= 20.10 (global fetch, WebSocket); got {version}"
    return NODE


def test_document_javascript_fetch_stream_example(qwen_daemon, node):
    p = subprocess.run([node, str(JS / "generate_stream.mjs")], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "LLMD_URL": qwen_daemon.url})
    assert p.returncode == 0, p.stderr
    assert "STATUS 200" in p.stderr
    assert p.stdout.strip()  # the chunks, one console.log each


def test_document_javascript_websocket_example(qwen_daemon, node):
    p = subprocess.run([node, "--experimental-websocket", str(JS / "websocket_chat.mjs")], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "LLMD_URL": qwen_daemon.url})
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("WebSocket 连接已建立")
    result = json.loads(next(line for line in p.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["types"]["assistant_chunk"] >= 1 and "error" not in result["types"]
    assert result["done"]["type"] == "assistant_done"
    assert result["done"]["content"] == result["chunks"]
    assert history(qwen_daemon, "demo_session")[0]["content"] == "你好，请介绍一下你自己"


# -- the WebSocket chat ---------------------------------------------------------------

def test_multi_turn_history_is_sent_and_persisted(daemon):
    session = f"alice-{time.time_ns()}"
    first = chat(daemon, session, "My name is Alice.", parameters={"max_length": 24})
    second = chat(daemon, session, "What is my name?", parameters={"max_length": 24})
    rows = history(daemon, session)
    assert [(r["role"], r["status"] in ("ok", "length")) for r in rows] == [
        ("user", True), ("assistant", True), ("user", True), ("assistant", True)]
    assert rows[0]["content"] == "My name is Alice." and rows[2]["content"] == "What is my name?"
    assert rows[1]["content"] == first["content"] and rows[3]["content"] == second["content"]
    # the second prompt carried the first exchange: it grew by at least the first answer's tokens
    # plus the second question, on top of the first prompt
    grow = second["usage"]["prompt_tokens"] - first["usage"]["prompt_tokens"]
    assert grow >= first["usage"]["completion_tokens"] + 4, (first["usage"], second["usage"])
    assert rows[2]["prompt_tokens"] == second["usage"]["prompt_tokens"]
    for msg in (first, second):
        assert msg["model"] == "smollm2-135m-instruct"
        assert msg["timing"]["duration"] >= msg["timing"]["ttft"] > 0
        assert msg["finish_reason"] in ("stop", "length")


def test_errors_keep_the_socket_open(daemon):
    with websockets_sync.connect(ws_url(daemon, f"err-{time.time_ns()}")) as ws:
        for raw in ("not json", json.dumps({"type": "dance"}),
                    json.dumps({"type": "chat_message", "message": "hi", "model": "qwen"}),
                    json.dumps({"type": "model_switch", "model": "qwen"})):
            ws.send(raw)
            assert recv(ws)["type"] == "error"
        ws.send(json.dumps({"type": "model_switch", "model": "default"}))
        assert recv(ws) == {"type": "model_switched", "model": "smollm2-135m-instruct"}
        ws.send(json.dumps({"type": "chat_message", "message": "Hi", "stream": False,
                            "parameters": {"max_length": 8}}))
        assert recv(ws)["type"] == "assistant_message"


LONG = {"max_length": 1500, "temperature": 1.0}
LONG_PROMPT = "Write a very long story about a dragon, with many chapters."


def test_in_band_cancel_frees_the_engine(daemon):
    session = f"cancel-{time.time_ns()}"
    before = last_request_id(daemon)
    with websockets_sync.connect(ws_url(daemon, session)) as ws:
        ws.send(json.dumps({"type": "chat_message", "message": LONG_PROMPT, "parameters": LONG}))
        assert recv(ws)["type"] == "assistant_chunk"
        ws.send(json.dumps({"type": "cancel"}))
        done = recv_until(ws)[-1]
        assert done["type"] == "assistant_done" and done["finish_reason"] == "cancelled"
        assert done["usage"]["completion_tokens"] < 1500
        assert wait_engine_idle(daemon) < 2
        row = wait_request_row(daemon, before)
        assert row["status"] == "cancelled" and row["dialect"] == "easyviz"
        # the socket is still usable
        ws.send(json.dumps({"type": "chat_message", "message": "Hi", "stream": False, "parameters": {"max_length": 4}}))
        assert recv(ws)["type"] == "assistant_message"
    rows = history(daemon, session)
    assert [(r["role"], r["status"]) for r in rows[:2]] == [("user", "ok"), ("assistant", "cancelled")]
    assert rows[1]["content"] == done["content"]


def test_closing_the_socket_mid_answer_frees_the_engine(daemon):
    session = f"close-{time.time_ns()}"
    before = last_request_id(daemon)
    with websockets_sync.connect(ws_url(daemon, session)) as ws:
        ws.send(json.dumps({"type": "chat_message", "message": LONG_PROMPT, "parameters": LONG}))
        assert recv(ws)["type"] == "assistant_chunk"
        ws.close()  # mid-answer
    assert wait_engine_idle(daemon) < 2
    row = wait_request_row(daemon, before)
    assert row["status"] == "cancelled" and row["completion_tokens"] < 1500
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(history(daemon, session)) < 2:
        time.sleep(0.05)
    rows = history(daemon, session)
    assert [(r["role"], r["status"]) for r in rows] == [("user", "ok"), ("assistant", "cancelled")]
    assert httpx.get(f"{daemon.url}{API}/health/").json()["active_connections"] == 0


def test_session_survives_a_daemon_restart(short_tmp):
    d = DaemonProcess(short_tmp).start()
    try:
        d.wait_loaded()
        first = chat(d, "restart", "My name is Alice.", parameters={"max_length": 16},
                     system="You are a helpful assistant.")
        with websockets_sync.connect(ws_url(d, "restart")) as ws:
            ws.send(json.dumps({"type": "model_switch", "model": "default"}))
            recv(ws)
    finally:
        assert d.stop() == 0
    d = DaemonProcess(short_tmp, port=d.port).start()
    try:
        d.wait_loaded()
        second = chat(d, "restart", "What is my name?", parameters={"max_length": 16})
        rows = history(d, "restart")
        assert [r["role"] for r in rows] == ["user", "assistant", "user", "assistant"]
        assert rows[1]["content"] == first["content"]
        grow = second["usage"]["prompt_tokens"] - first["usage"]["prompt_tokens"]
        assert grow >= first["usage"]["completion_tokens"] + 4
        session = db_rows(d, "SELECT model, system_prompt FROM chat_sessions WHERE id='restart'")[0]
        assert session == {"model": "smollm2-135m-instruct", "system_prompt": "You are a helpful assistant."}
    finally:
        d.stop()
