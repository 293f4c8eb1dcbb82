"""Seed 001 (API-spec service) against the real daemon and model: every route, the document's
Python and JavaScript clients, /metrics, the OpenAI section (0.x call shape, LangChain), rate limits."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import requests
from daemonproc import DaemonProcess
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m-instruct"
SIZE_RE = re.compile(r"^\d+(\.\d)?(B|KB|MB|GB|TB)$")
JS_DIR = Path(__file__).parent / "js"

# --- verbatim from shared/seeds/001 ("Python客户端示例"); only the URL is pointed at the test daemon ---
SEED_PYTHON_CLIENT = '''
import requests

def generate_text(prompt, model="default"):
    url = "http://localhost:8000/api/v1/generate"
    payload = {
        "prompt": prompt,
        "model": model,
        "max_tokens": 512,
        "temperature": 0.7
    }

    response = requests.post(url, json=payload)
    return response.json()

# 使用示例
result = generate_text("请写一首关于春天的诗")
print(result["text"])
'''


def sse_events(lines) -> list[dict]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# -- health --------------------------------------------------------------------------------

def test_health(daemon):
    r = httpx.get(f"{daemon.url}/api/v1/health", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy" and body["model_loaded"] is True
    used, _, total = body["memory_usage"].partition("/")
    assert SIZE_RE.match(used) and SIZE_RE.match(total)
    assert used.endswith("MB") or used.endswith("GB")  # a real process with a model is not a few KB
    assert isinstance(body["active_connections"], int)


def test_active_connections_counts_an_open_stream(daemon):
    """Open SSE streams are counted while open, and no longer once the client disconnects."""
    with httpx.Client(timeout=60) as c, c.stream("POST", f"{daemon.url}/api/v1/generate/stream",
                                                 json={"prompt": "Tell me a long story.", "max_tokens": 200}) as r:
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["finished"] is False
        health = httpx.get(f"{daemon.url}/api/v1/health", timeout=10).json()
        assert health["active_connections"] >= 1
        scraped = metric_samples(httpx.get(f"{daemon.url}/metrics", timeout=10).text)
        assert scraped[("active_connections", ())] >= 1
    # the client hung up mid-answer: the stream is no longer counted (and its generation is cancelled)
    deadline = time.monotonic() + 5
    while httpx.get(f"{daemon.url}/api/v1/health", timeout=10).json()["active_connections"] and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(f"{daemon.url}/api/v1/health", timeout=10).json()["active_connections"] == 0


# -- generate ------------------------------------------------------------------------------

def test_seed_python_client_as_written(daemon, capsys):
    code = SEED_PYTHON_CLIENT.replace("http://localhost:8000", daemon.url)
    exec(compile(code, "seed001_python_client", "exec"), {"__name__": "seed001"})  # noqa: S102
    printed = capsys.readouterr().out
    assert printed.strip()


def test_generate(daemon):
    r = requests.post(f"{daemon.url}/api/v1/generate", timeout=120, json={
        "prompt": "What is the capital of France?", "model": MODEL, "max_tokens": 24, "temperature": 0})
    assert r.status_code == 200
    body = r.json()
    assert body["text"].strip()
    u = body["usage"]
    assert u["prompt_tokens"] > 5 and 0 < u["completion_tokens"] <= 24
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert 0 < body["latency"] < 120
    assert "Paris" in body["text"]


def test_generate_errors(daemon):
    r = requests.post(f"{daemon.url}/api/v1/generate", json={"prompt": "hi", "model": "qwen-7b-chat"}, timeout=30)
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "MODEL_NOT_FOUND" and MODEL in err["details"]["available"]
    r = requests.post(f"{daemon.url}/api/v1/generate", json={"prompt": "hi", "temperature": 3}, timeout=30)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_REQUEST" and "temperature" in r.json()["error"]["message"]
    r = requests.post(f"{daemon.url}/api/v1/generate", json={"prompt": "hi", "max_tokens": 4097}, timeout=30)
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]


def test_generate_with_stream_true(daemon):
    with requests.post(f"{daemon.url}/api/v1/generate", timeout=120, stream=True,
                       json={"prompt": "Say hello.", "max_tokens": 16, "stream": True}) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(r.iter_lines(decode_unicode=True))
    assert events[-1]["finished"] is True and events[-1]["usage"]["completion_tokens"] > 0


def test_stream(daemon):
    with requests.post(f"{daemon.url}/api/v1/generate/stream", timeout=120, stream=True,
                       headers={"Accept": "text/event-stream"},
                       json={"prompt": "请解释人工智能的概念", "model": "default", "max_tokens": 40,
                             "temperature": 0.7}) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(r.iter_lines(decode_unicode=True))
    assert len(events) >= 2
    assert all(e["finished"] is False and isinstance(e["token"], str) for e in events[:-1])
    last = events[-1]
    assert last["finished"] is True
    assert 0 < last["usage"]["completion_tokens"] <= 40
    assert "".join(e["token"] for e in events).strip()


def test_stream_reads_are_one_event_each(daemon):
    """What the document's JavaScript relies on: each chunk of the body is exactly one event."""
    with httpx.Client(timeout=120) as c, c.stream("POST", f"{daemon.url}/api/v1/generate/stream",
                                                  json={"prompt": "Count to ten.", "max_tokens": 30}) as r:
        chunks = [chunk.decode() for chunk in r.iter_raw()]
    assert len(chunks) >= 2
    for chunk in chunks:
        assert chunk.startswith("data: ") and chunk.endswith("\n\n") and chunk.count("\n\n") == 1, chunks
    assert json.loads(chunks[-1][6:])["finished"] is True


def test_seed_javascript_client_under_node(daemon):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    assert int(version.lstrip("v").split(".")[0]) >= 18, version
    p = subprocess.run([node, str(JS_DIR / "spec_stream.mjs"), daemon.url, "Write a haiku about spring."],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    assert "STREAM-END" in p.stderr
    tokens = p.stdout.split("\n")
    assert len(tokens) >= 3 and "undefined" not in tokens, p.stdout
    assert "".join(tokens).strip()


# -- models ----------------------------------------------------------------------------------

def test_models(daemon):
    r = httpx.get(f"{daemon.url}/api/v1/models", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert {"models", "items", "total", "page", "size", "pages"} <= set(body)
    m = next(x for x in body["models"] if x["name"] == MODEL)
    assert m["format"] == "gguf" and m["loaded"] is True
    assert m["size"].endswith("MB") and SIZE_RE.match(m["size"])
    assert m["memory_usage"] == m["size"]
    assert body["page"] == 1 and body["size"] == 20 and body["total"] >= 1
    r = httpx.get(f"{daemon.url}/api/v1/models?page=1&size=101", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"


def test_load(daemon):
    r = httpx.post(f"{daemon.url}/api/v1/models/{MODEL}/load", json={}, timeout=300)
    assert r.status_code == 200
    body = r.json()
    assert body["loaded"] is True and body["model"] == MODEL and body["quantization"] == "Q4_1"
    r = httpx.post(f"{daemon.url}/api/v1/models/default/load", json={"quantization": "q4_1", "prefer_gpu": True},
                   timeout=300)
    assert r.status_code == 200
    body = r.json()
    if body["gpu_available"]:
        assert body["n_gpu_layers"] == -1 and body["device"] != "cpu"
    else:
        assert "no GPU" in body["message"] and body["device"] == "cpu"
    r = httpx.post(f"{daemon.url}/api/v1/models/{MODEL}/load", json={"prefer_gpu": False}, timeout=300)
    assert r.status_code == 200 and r.json()["n_gpu_layers"] == 0 and r.json()["device"] == "cpu"
    r = httpx.post(f"{daemon.url}/api/v1/models/{MODEL}/load", json={"quantization": "q8_0"}, timeout=30)
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "MODEL_NOT_FOUND" and err["details"]["available_quantizations"] == ["Q4_1"]
    r = httpx.post(f"{daemon.url}/api/v1/models/llama-2-7b-chat/load", json={"quantization": "q4_0"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "MODEL_NOT_FOUND"
    # still serving
    assert httpx.get(f"{daemon.url}/api/v1/health", timeout=10).json()["status"] == "healthy"


# -- batch ------------------------------------------------------------------------------------

def test_batch(daemon):
    r = httpx.post(f"{daemon.url}/api/v1/batch/generate", timeout=300, json={"requests": [
        {"prompt": "What is 2+2?", "max_tokens": 16},
        {"prompt": "Name a color.", "max_tokens": 12, "temperature": 9},
        {"prompt": "Name a fruit.", "max_tokens": 12},
        {"prompt": "hi", "model": "qwen-7b-chat"},
    ]})
    assert r.status_code == 200
    res = r.json()["results"]
    assert len(res) == 4
    for i in (0, 2):
        assert res[i]["text"].strip() and 0 < res[i]["usage"]["completion_tokens"] <= 16
    assert res[1]["error"]["code"] == "INVALID_REQUEST" and "temperature" in res[1]["error"]["message"]
    assert res[3]["error"]["code"] == "MODEL_NOT_FOUND"
    r = httpx.post(f"{daemon.url}/api/v1/batch/generate", timeout=30,
                   json={"requests": [{"prompt": "x", "max_tokens": 1}] * 17})
    assert r.status_code == 400 and r.json()["error"]["details"]["max_batch_size"] == 16


# -- metrics -----------------------------------------------------------------------------------

def test_metrics_move(daemon):
    key = ("llmd_requests_total", (("dialect", "api_v1"), ("model", MODEL), ("status", "length")))
    before = metric_samples(httpx.get(f"{daemon.url}/metrics", timeout=10).text)
    for _ in range(2):
        r = httpx.post(f"{daemon.url}/api/v1/generate", json={"prompt": "Tell me a story.", "max_tokens": 8,
                                                              "temperature": 0}, timeout=120)
        assert r.status_code == 200
    time.sleep(0.2)
    for path in ("/metrics", "/api/v1/metrics"):
        r = httpx.get(f"{daemon.url}{path}", timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        after = metric_samples(r.text)
        assert after[key] >= before.get(key, 0) + 2
        assert after[("model_inference_seconds_count", ())] >= before[("model_inference_seconds_count", ())] + 2
        assert after[("llmd_completion_tokens_total", (("model", MODEL),))] >= \
            before[("llmd_completion_tokens_total", (("model", MODEL),))] + 16
        assert after[("llmd_time_to_first_token_seconds_count", (("model", MODEL),))] >= 2
        assert after[("llmd_model_loaded", (("model", MODEL),))] == 1
        assert after[("llmd_queue_length", (("model", MODEL),))] == 0
        assert after[("llmd_process_resident_memory_bytes", ())] > 50_000_000
        assert after[("llmd_process_cpu_seconds_total", ())] > 0
        assert ("active_connections", ()) in after
        assert ("model_inference_seconds_bucket", (("le", "1.0"),)) in after


# -- the document's OpenAI section ------------------------------------------------------------

def _openai_0x_chat_create(api_base: str, api_key: str, **params):
    """What ``openai.ChatCompletion.create`` of openai 0.28 sends with ``openai.api_base``/``api_key`` set."""
    r = requests.post(
        f"{api_base}/chat/completions",
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                 "User-Agent": "OpenAI/v1 PythonBindings/0.28.1",
                 "X-OpenAI-Client-User-Agent": json.dumps({"bindings_version": "0.28.1", "httplib": "requests",
                                                           "lang": "python", "publisher": "openai"})},
        data=json.dumps(params), timeout=120)
    return r


def test_openai_0x_call_shape(daemon):
    r = _openai_0x_chat_create(f"{daemon.url}/v1", "any-key", model="default", messages=[
        {"role": "system", "content": "你是一个有帮助的助手"},
        {"role": "user", "content": "请解释人工智能的概念"}], max_tokens=16)
    assert r.status_code == 200
    response = r.json()
    assert response["choices"][0]["message"]["content"].strip()  # response.choices[0].message.content
    assert response["object"] == "chat.completion"
    # the document's own model name is not registered here: a clear 404, never another model
    r = _openai_0x_chat_create(f"{daemon.url}/v1", "any-key", model="qwen-7b-chat",
                               messages=[{"role": "user", "content": "hi"}])
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "model_not_found" and "qwen-7b-chat" in err["message"]


def test_langchain_completion_class(daemon):
    from langchain_openai import OpenAI

    llm = OpenAI(base_url=f"{daemon.url}/v1", api_key="x", model="default", max_tokens=24, max_retries=0)
    out = llm.invoke("The capital of France is")
    assert isinstance(out, str) and out.strip()


def test_langchain_with_the_documents_argument_names(daemon):
    from langchain_openai import ChatOpenAI, OpenAI

    llm = OpenAI(openai_api_base=f"{daemon.url}/v1", model_name="default", openai_api_key="x", max_tokens=16,
                 max_retries=0)
    assert llm.invoke("Hello,").strip()
    chat = ChatOpenAI(openai_api_base=f"{daemon.url}/v1", model_name="default", openai_api_key="x",
                      max_tokens=16, max_retries=0)
    assert chat.invoke("Say hi.").content.strip()


# -- rate limiting over real TCP and a real Unix socket ------------------------------------------

@pytest.fixture(scope="module")
def limited_daemon():
    """A daemon with rate limiting on (3 at once, 1 a minute) and no model loaded: quick to start."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="llmd-e2e-"))
    d = DaemonProcess(root, args=["--no-load", "--set", "ratelimit.enabled=on", "--set", "ratelimit.burst=3",
                                  "--set", "ratelimit.requests_per_minute=1"]).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            if d.proc.poll() is not None:
                raise RuntimeError(d.log())
            try:
                # over the Unix socket: exempt, so waiting does not spend the TCP client's tokens
                with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket_path)), timeout=2) as c:
                    if c.get("http://llmd/health").status_code == 200:
                        break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not start:\n{d.log()}")
            time.sleep(0.1)
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_rate_limit_over_tcp(limited_daemon):
    url = limited_daemon.url
    remaining = []
    for _ in range(3):
        r = httpx.get(f"{url}/api/v1/health", timeout=10)
        assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "3"
        assert int(r.headers["X-RateLimit-Reset"]) >= int(time.time())
        remaining.append(r.headers["X-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    r = httpx.post(f"{url}/api/v1/generate", json={"prompt": "hi"}, timeout=10)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["code"] == "RATE_LIMITED"
    r = httpx.get(f"{url}/v1/models", timeout=10)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    # a client with an API key has its own bucket
    r = httpx.get(f"{url}/api/v1/models", headers={"Authorization": "Bearer any-key"}, timeout=10)
    assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "2"
    # outside /api/v1 and /v1: not limited
    r = httpx.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers
    assert metric_samples(r.text)[("llmd_rate_limited_requests_total", (("dialect", "api_v1"),))] >= 1


def test_unix_socket_clients_are_exempt(limited_daemon):
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(limited_daemon.socket_path)), timeout=10) as c:
        for _ in range(6):
            r = c.get("http://llmd/api/v1/health")
            assert r.status_code == 200
            assert "X-RateLimit-Limit" not in r.headers
            assert r.json()["status"] == "model_not_loaded" and r.json()["model_loaded"] is False
        # the model is loaded on demand (deployments.load_on_demand), and the socket is still not limited
        r = c.post("http://llmd/api/v1/generate", json={"prompt": "hi", "max_tokens": 2}, timeout=120)
        assert r.status_code == 200, r.text
        assert "X-RateLimit-Limit" not in r.headers

