"""Raw HTTP against the real daemon: SSE framing, UTF-8, disconnects, the Unix socket."""

from __future__ import annotations

import json
import sqlite3
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e


def sse_data(lines):
    return [line[6:] for line in lines if line.startswith("data: ")]


def wait_idle(daemon, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deps = httpx.get(f"{daemon.url}/health").json()["details"]["deployments"]
        if all(d["active"] == 0 and d["queued"] == 0 for d in deps):
            return
        time.sleep(0.05)
    raise AssertionError("the engine did not become idle")


def request_rows(daemon):
    db = sqlite3.connect(f"file:{daemon.state_dir / 'llmd.db'}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM request_log ORDER BY id")]
    finally:
        db.close()


def test_curl_style_chat_stream(daemon):
    body = {"model": "default", "stream": True, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Hello!"}]}
    with httpx.stream("POST", f"{daemon.url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        data = sse_data(list(r.iter_lines()))
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("prompt", ["用中文写一句关于春天的话。", "Напиши одно предложение о весне по-русски."])
def test_streamed_utf8_is_never_broken(daemon, prompt):
    body = {"model": "default", "stream": True, "max_tokens": 60, "temperature": 0.9, "seed": 7,
            "messages": [{"role": "user", "content": prompt}]}
    with httpx.stream("POST", f"{daemon.url}/v1/chat/completions", json=body, timeout=60) as r:
        raw = r.read()
    text = raw.decode("utf-8")  # raises on any broken sequence on the wire
    pieces = [json.loads(d)["choices"][0]["delta"].get("content", "")
              for d in sse_data(text.splitlines()) if d != "[DONE]"]
    assert "".join(pieces)
    assert not any("\ufffd" in p for p in pieces), "a token boundary split a character"


def test_seed003_stream_framing(daemon):
    with httpx.stream("POST", f"{daemon.url}/generate", timeout=60,
                      json={"prompt": "List three fruits, one per line.", "max_tokens": 40}) as r:
        assert r.status_code == 200
        raw = r.read().decode("utf-8")
    events = [e for e in raw.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    for e in events:
        assert all(line.startswith("data: ") or line == "data:" for line in e.split("\n")), e


@pytest.mark.parametrize("route,body", [
    ("/v1/chat/completions", {"model": "default", "stream": True, "max_tokens": 1500, "ignore_eos": True,
                              "messages": [{"role": "user", "content": "Tell me a very long story."}]}),
    ("/generate", {"prompt": "Tell me a very long story.", "max_tokens": 1500}),
])
def test_client_disconnect_frees_the_engine(daemon, route, body):
    wait_idle(daemon)
    before = len(request_rows(daemon))
    with httpx.stream("POST", f"{daemon.url}{route}", json=body, timeout=60) as r:
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen += 1
            if seen >= 5:
                break
    # The connection is closed: the generation must stop at the next token.
    wait_idle(daemon, timeout=20)
    rows = request_rows(daemon)[before:]
    deadline = time.monotonic() + 10
    while not rows and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = request_rows(daemon)[before:]
    assert rows, "the cancelled request was not logged"
    assert rows[-1]["status"] == "cancelled"
    assert rows[-1]["completion_tokens"] < 1500
    # And the engine serves the next request at once.
    r = httpx.post(f"{daemon.url}/v1/completions", timeout=60,
                   json={"model": "default", "prompt": "Hi", "max_tokens": 3})
    assert r.status_code == 200


def test_unix_socket_serves_the_same_api(daemon):
    transport = httpx.HTTPTransport(uds=str(daemon.socket_path))
    with httpx.Client(transport=transport, base_url="http://llmd", timeout=60) as c:
        assert c.get("/health").json()["model_loaded"] is True
        r = c.post("/v1/chat/completions", json={"model": "default", "max_tokens": 8,
                                                 "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    assert oct(daemon.socket_path.stat().st_mode & 0o777) == "0o660"


def test_request_log_records_each_request(daemon):
    wait_idle(daemon)
    before = len(request_rows(daemon))
    httpx.post(f"{daemon.url}/generate", json={"prompt": "Hi", "stream": False, "max_tokens": 4}, timeout=60)
    deadline = time.monotonic() + 10
    rows = []
    while time.monotonic() < deadline and not rows:
        rows = request_rows(daemon)[before:]
        time.sleep(0.05)
    row = rows[-1]
    assert row["dialect"] == "llama_local" and row["endpoint"] == "/generate"
    assert row["model"] == "smollm2-135m-instruct"
    assert row["prompt_tokens"] > 0 and 0 < row["completion_tokens"] <= 4
    assert row["ttft_ms"] > 0 and row["duration_ms"] >= row["ttft_ms"]
    assert row["status"] in ("ok", "length")
