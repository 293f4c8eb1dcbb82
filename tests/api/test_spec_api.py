"""Seed 001 (API-spec service): every /api/v1 route and /metrics on a FakeEngine, plus rate limiting."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from helpers import parse_sse, wait_requests, write_tiny_gguf
from prometheus_client.parser import text_string_to_metric_families

from llmd.core.engine.fake import FakeEngine
from llmd.core.types import ChatMessage
from llmd.http import create_app

REPLY = "Hello from the fake engine."
SIZE_RE = re.compile(r"^\d+(\.\d)?(B|KB|MB|GB|TB)$")
LAN = {"client": ("192.0.2.10", 40000)}  # a TCP peer on the LAN, as Hypercorn puts it in the scope


@pytest.fixture
def client(fake_core):
    return create_app(fake_core).test_client()


async def json_of(r):
    return json.loads(await r.get_data(as_text=True))


def assert_error(body, code: str, *needles: str) -> dict:
    """Seed 001's envelope: exactly {"error": {"code", "message", "details"}}."""
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    for n in needles:
        assert n in err["message"], (n, err["message"])
    return err


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text body, parsed by prometheus-client's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# -- health ---------------------------------------------------------------------------

async def test_health_when_loaded(client):
    r = await client.get("/api/v1/health")
    assert r.status_code == 200
    body = await json_of(r)
    assert body["status"] == "healthy"
    assert body["model_loaded"] is True
    used, _, total = body["memory_usage"].partition("/")
    assert SIZE_RE.match(used) and SIZE_RE.match(total), body["memory_usage"]
    assert body["active_connections"] == 0
    assert body["default_model"] == "tiny"


async def test_health_when_model_not_loaded(core_factory):
    core = await core_factory(**{"models.load_default": False})
    body = await json_of(await create_app(core).test_client().get("/api/v1/health"))
    assert body["status"] == "model_not_loaded" and body["model_loaded"] is False


async def test_health_when_the_load_failed(core_factory):
    core = await core_factory(FakeEngine(fail_load=True))
    r = await create_app(core).test_client().get("/api/v1/health")
    assert r.status_code == 200
    body = await json_of(r)
    assert body["status"] == "unhealthy" and body["model_loaded"] is False


async def test_active_connections_counts_open_streams(core_factory):
    core = await core_factory(FakeEngine(delay_s=0.02))
    client = create_app(core).test_client()
    async with client.request("/api/v1/generate/stream", method="POST",
                              headers={"Content-Type": "application/json"}) as conn:
        await conn.send(json.dumps({"prompt": "hi"}).encode())
        await conn.send_complete()
        first = await conn.receive()
        assert first.startswith(b"data: ")
        health = await json_of(await client.get("/api/v1/health"))
        assert health["active_connections"] == 1
        metrics = samples(await (await client.get("/metrics")).get_data(as_text=True))
        assert metrics[("active_connections", ())] == 1
        while True:  # read to the end
            try:
                chunk = await asyncio.wait_for(conn.receive(), 5)
            except Exception:  # noqa: BLE001 - the connection ends with an exception in the test client
                break
            if b'"finished":true' in chunk:
                break
    await asyncio.sleep(0.05)
    assert (await json_of(await client.get("/api/v1/health")))["active_connections"] == 0


# -- generate ---------------------------------------------------------------------------

async def test_generate(client, fake_core):
    r = await client.post("/api/v1/generate", json={"prompt": "请解释人工智能的概念", "model": "tiny",
                                                    "max_tokens": 100, "temperature": 0.7, "stream": False})
    assert r.status_code == 200
    body = await json_of(r)
    assert body["text"] == REPLY
    u = body["usage"]
    assert u["completion_tokens"] == len(REPLY)
    assert u["prompt_tokens"] > 0 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert isinstance(body["latency"], float) and 0 <= body["latency"] < 10
    rows = await wait_requests(fake_core, 1)
    assert rows[0]["dialect"] == "api_v1" and rows[0]["endpoint"] == "/api/v1/generate"


async def test_generate_uses_the_chat_template(client, fake_core):
    """The prompt is the user's turn of a chat, rendered by the model's template (the fake: 4 bytes a token)."""
    r = await client.post("/api/v1/generate", json={"prompt": "x" * 40})
    body = await json_of(r)
    loaded = fake_core.fleet.get("tiny").loaded
    rendered = loaded.render_chat([ChatMessage("user", "x" * 40)])
    assert rendered != "x" * 40
    assert body["usage"]["prompt_tokens"] == len(loaded.tokenize(rendered))


async def test_generate_default_and_omitted_model(client):
    for extra in ({}, {"model": "default"}):
        r = await client.post("/api/v1/generate", json={"prompt": "hi", **extra})
        assert r.status_code == 200, extra
        assert (await json_of(r))["model"] == "tiny"


async def test_generate_max_tokens(client):
    body = await json_of(await client.post("/api/v1/generate", json={"prompt": "hi", "max_tokens": 5}))
    assert body["text"] == REPLY[:5] and body["usage"]["completion_tokens"] == 5
    assert body["finish_reason"] == "length"


async def test_generate_with_stream_true_streams(client):
    r = await client.post("/api/v1/generate", json={"prompt": "hi", "stream": True})
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = [json.loads(e) for e in parse_sse(await r.get_data(as_text=True))]
    assert "".join(e["token"] for e in events) == REPLY
    assert events[-1]["finished"] is True


@pytest.mark.parametrize("field,value", [
    ("max_tokens", 0), ("max_tokens", 4097), ("max_tokens", 1.5), ("max_tokens", "10"), ("max_tokens", True),
    ("temperature", -0.1), ("temperature", 2.01), ("temperature", "hot"),
    ("prompt", ""), ("prompt", 12), ("prompt", None), ("model", ""), ("model", 3), ("stream", "yes"),
])
async def test_generate_rejects_bad_fields(client, field, value):
    body = {"prompt": "hi", field: value}
    for path in ("/api/v1/generate", "/api/v1/generate/stream"):
        if field == "stream" and path.endswith("stream"):
            continue
        r = await client.post(path, json=body)
        assert r.status_code == 400, (path, field, value)
        err = assert_error(await json_of(r), "INVALID_REQUEST", field)
        assert err["details"], err


async def test_generate_range_edges_are_accepted(client):
    for body in ({"max_tokens": 1}, {"max_tokens": 4096}, {"temperature": 0}, {"temperature": 2}):
        r = await client.post("/api/v1/generate", json={"prompt": "hi", **body})
        # max_tokens 4096 does not fit the tiny model's context (256): a 400 that says so, not a range error
        assert r.status_code in (200, 400), body
        if r.status_code == 400:
            assert_error(await json_of(r), "CONTEXT_LENGTH_EXCEEDED", "context")


@pytest.mark.parametrize("data", [b"not json", b"", b"[1]", b'{"prompt": '])
async def test_generate_bad_json(client, data):
    r = await client.post("/api/v1/generate", data=data, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert_error(await json_of(r), "INVALID_JSON")


async def test_generate_unknown_model_is_404_with_the_available_names(client, fake_core):
    for path in ("/api/v1/generate", "/api/v1/generate/stream"):
        r = await client.post(path, json={"prompt": "hi", "model": "qwen-7b-chat"})
        assert r.status_code == 404
        err = assert_error(await json_of(r), "MODEL_NOT_FOUND", "qwen-7b-chat")
        assert err["details"]["available"] == ["tiny"]
    assert fake_core.fleet.get("tiny").completed == 0  # never sent to another model


async def test_generate_model_not_loaded_is_503(core_factory):
    core = await core_factory(**{"models.load_default": False, "deployments.load_on_demand": False})
    r = await create_app(core).test_client().post("/api/v1/generate", json={"prompt": "hi"})
    assert r.status_code == 503
    assert r.headers["Retry-After"]
    err = assert_error(await json_of(r), "MODEL_NOT_LOADED")
    assert err["details"]["model"] == "tiny"
    assert "/api/v1/models/tiny/load" in err["details"]["hint"]


async def test_generate_engine_failure_is_500_in_envelope(core_factory):
    core = await core_factory(FakeEngine(fail_after=2))
    r = await create_app(core).test_client().post("/api/v1/generate", json={"prompt": "hi"})
    assert r.status_code == 500
    text = await r.get_data(as_text=True)
    assert "Traceback" not in text
    assert_error(json.loads(text), "ENGINE_ERROR")


async def test_queue_full_is_503_server_busy(core_factory):
    core = await core_factory(FakeEngine(delay_s=0.05), **{"engine.queue_size": 0, "engine.parallel": 1})
    client = create_app(core).test_client()
    first = asyncio.ensure_future(client.post("/api/v1/generate", json={"prompt": "hi"}))
    await asyncio.sleep(0.1)
    r = await client.post("/api/v1/generate", json={"prompt": "hi"})
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert_error(await json_of(r), "SERVER_BUSY")
    assert (await first).status_code == 200


# -- stream -------------------------------------------------------------------------------

async def test_stream_events(client):
    r = await client.post("/api/v1/generate/stream", json={"prompt": "请解释人工智能的概念", "model": "tiny",
                                                           "max_tokens": 100, "temperature": 0.7},
                          headers={"Accept": "text/event-stream"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["Cache-Control"] == "no-cache"
    events = [json.loads(e) for e in parse_sse(await r.get_data(as_text=True))]
    assert len(events) == len(REPLY)  # one event per token; the last token rides on the final event
    assert all(e["finished"] is False and set(e) == {"token", "finished"} for e in events[:-1])
    last = events[-1]
    assert last["finished"] is True and last["token"] == REPLY[-1]
    assert last["usage"]["completion_tokens"] == len(REPLY)
    assert "".join(e["token"] for e in events) == REPLY


async def test_stream_sends_one_event_per_chunk(core_factory):
    """The document's JS client parses each read() as one event: every body chunk must be exactly one."""
    core = await core_factory(FakeEngine("你好，世界", delay_s=0.01))
    client = create_app(core).test_client()
    chunks = []
    async with client.request("/api/v1/generate/stream", method="POST",
                              headers={"Content-Type": "application/json"}) as conn:
        await conn.send(json.dumps({"prompt": "hi"}).encode())
        await conn.send_complete()
        while True:
            chunk = await asyncio.wait_for(conn.receive(), 5)
            chunks.append(chunk.decode())
            if b'"finished":true' in chunk:
                break
    tokens = []
    for chunk in chunks:
        # what the document's JavaScript does with each read
        assert chunk.startswith("data: ") and chunk.endswith("\n\n") and chunk.count("data: ") == 1, chunk
        tokens.append(json.loads(chunk.replace("data: ", "", 1))["token"])
    assert "".join(tokens) == "你好，世界"


async def test_stream_error_mid_stream_is_a_final_event(core_factory):
    core = await core_factory(FakeEngine(fail_after=4))
    r = await create_app(core).test_client().post("/api/v1/generate/stream", json={"prompt": "hi"})
    assert r.status_code == 200
    events = [json.loads(e) for e in parse_sse(await r.get_data(as_text=True))]
    assert "".join(e["token"] for e in events) == REPLY[:4]
    last = events[-1]
    assert last["finished"] is True and last["token"] == REPLY[3]
    assert last["error"]["code"] == "ENGINE_ERROR" and last["error"]["message"]
    assert all(e["finished"] is False for e in events[:-1])


async def test_stream_of_an_empty_answer(core_factory):
    core = await core_factory(FakeEngine(""))
    r = await create_app(core).test_client().post("/api/v1/generate/stream", json={"prompt": "hi"})
    events = [json.loads(e) for e in parse_sse(await r.get_data(as_text=True))]
    assert events == [{"token": "", "finished": True, "usage": events[0]["usage"], "latency": events[0]["latency"],
                       "model": "tiny", "finish_reason": "stop"}]


# -- models -------------------------------------------------------------------------------

async def _register(core, tmp_path: Path, names_types: list[tuple[str, int]]) -> None:
    for name, ftype in names_types:
        f = write_tiny_gguf(tmp_path / f"{name}.gguf", file_type=ftype)
        await core.registry.add_file(f, name)


async def test_models_list(client):
    r = await client.get("/api/v1/models")
    assert r.status_code == 200
    body = await json_of(r)
    assert body["total"] == 1 and body["page"] == 1 and body["size"] == 20 and body["pages"] == 1
    assert body["models"] == body["items"]
    m = body["models"][0]
    assert m["name"] == "tiny" and m["format"] == "gguf" and m["loaded"] is True
    assert SIZE_RE.match(m["size"]) and SIZE_RE.match(m["memory_usage"])
    assert m["memory_usage"] == m["size"]
    assert m["quantization"] == "Q4_1"


async def test_models_pagination(fake_core, tmp_path):
    await _register(fake_core, tmp_path, [(f"m{i:02d}", 3) for i in range(24)])
    client = create_app(fake_core).test_client()
    body = await json_of(await client.get("/api/v1/models?page=2&size=10"))
    assert body["total"] == 25 and body["pages"] == 3 and body["page"] == 2 and body["size"] == 10
    assert [m["name"] for m in body["models"]] == [f"m{i:02d}" for i in range(10, 20)]
    last = await json_of(await client.get("/api/v1/models?page=3&size=10"))
    assert len(last["items"]) == 5
    beyond = await json_of(await client.get("/api/v1/models?page=9&size=10"))
    assert beyond["items"] == [] and beyond["total"] == 25
    unloaded = next(m for m in body["models"] if m["name"] == "m10")
    assert unloaded["loaded"] is False and unloaded["memory_usage"] == "0B"
    big = await json_of(await client.get("/api/v1/models?size=100"))
    assert len(big["items"]) == 25


@pytest.mark.parametrize("query,field", [("size=101", "size"), ("size=0", "size"), ("page=0", "page"),
                                         ("page=abc", "page")])
async def test_models_bad_pagination(client, query, field):
    r = await client.get(f"/api/v1/models?{query}")
    assert r.status_code == 400
    assert_error(await json_of(r), "INVALID_REQUEST", field)


# -- load ----------------------------------------------------------------------------------

async def test_load_already_loaded_model(client, fake_core):
    r = await client.post("/api/v1/models/tiny/load", json={})
    assert r.status_code == 200
    body = await json_of(r)
    assert body["status"] == "loaded" and body["loaded"] is True and body["model"] == "tiny"
    assert body["quantization"] == "Q4_1"


async def test_load_a_model_that_is_not_loaded(core_factory):
    core = await core_factory(**{"models.load_default": False, "deployments.load_on_demand": False})
    client = create_app(core).test_client()
    assert (await client.post("/api/v1/generate", json={"prompt": "hi"})).status_code == 503
    r = await client.post("/api/v1/models/tiny/load", json={"quantization": "q4_1", "prefer_gpu": False})
    assert r.status_code == 200
    body = await json_of(r)
    assert body["loaded"] is True and body["n_gpu_layers"] == 0
    assert (await client.post("/api/v1/generate", json={"prompt": "hi"})).status_code == 200
    health = await json_of(await client.get("/api/v1/health"))
    assert health["status"] == "healthy"


async def test_load_prefer_gpu_without_a_gpu(client, fake_core):
    fake_core.engine.gpu = False
    body = await json_of(await client.post("/api/v1/models/tiny/load", json={"prefer_gpu": True}))
    assert body["loaded"] is True and body["gpu_available"] is False
    assert body["n_gpu_layers"] == 0 and body["device"] == "cpu"
    assert "no GPU" in body["message"]


async def test_load_prefer_gpu_with_a_gpu_offloads_every_layer(client, fake_core):
    fake_core.engine.gpu = True
    body = await json_of(await client.post("/api/v1/models/default/load", json={"prefer_gpu": True}))
    assert body["gpu_available"] is True and body["n_gpu_layers"] == -1 and "message" not in body
    assert fake_core.fleet.get("tiny").settings.n_gpu_layers == -1
    # and back to the CPU
    body = await json_of(await client.post("/api/v1/models/tiny/load", json={"prefer_gpu": False}))
    assert body["n_gpu_layers"] == 0


async def test_load_picks_the_quantization_of_the_same_family(fake_core, tmp_path):
    await _register(fake_core, tmp_path, [("tiny-q8_0", 7), ("other-q5_0", 8)])
    client = create_app(fake_core).test_client()
    r = await client.post("/api/v1/models/tiny/load", json={"quantization": "q8_0"})
    assert r.status_code == 200
    body = await json_of(r)
    assert body["model"] == "tiny-q8_0" and body["quantization"] == "Q8_0"
    assert fake_core.fleet.get("tiny-q8_0").state.value == "running"


async def test_load_unknown_quantization_is_404_with_the_ones_that_exist(fake_core, tmp_path):
    await _register(fake_core, tmp_path, [("tiny-q8_0", 7), ("other-q5_0", 8)])
    client = create_app(fake_core).test_client()
    r = await client.post("/api/v1/models/tiny/load", json={"quantization": "q4_0", "prefer_gpu": False})
    assert r.status_code == 404
    err = assert_error(await json_of(r), "MODEL_NOT_FOUND", "q4_0")
    assert err["details"]["available_quantizations"] == ["Q4_1", "Q8_0"]
    assert fake_core.fleet.get("tiny-q8_0") is None


async def test_load_unknown_model_is_404(client):
    r = await client.post("/api/v1/models/qwen-7b-chat/load", json={"quantization": "q4_0"})
    assert r.status_code == 404
    err = assert_error(await json_of(r), "MODEL_NOT_FOUND", "qwen-7b-chat")
    assert err["details"]["available"] == ["tiny"]


async def test_load_bad_body(client):
    r = await client.post("/api/v1/models/tiny/load", json={"prefer_gpu": "yes"})
    assert r.status_code == 400
    assert_error(await json_of(r), "INVALID_REQUEST", "prefer_gpu")
    r = await client.post("/api/v1/models/tiny/load", json={"quantization": ""})
    assert_error(await json_of(r), "INVALID_REQUEST", "quantization")


async def test_load_failure_is_503(core_factory):
    engine = FakeEngine()
    core = await core_factory(engine, **{"models.load_default": False})
    engine.fail_load = True
    r = await create_app(core).test_client().post("/api/v1/models/tiny/load", json={})
    assert r.status_code == 503
    assert_error(await json_of(r), "MODEL_LOAD_FAILED", "failed to load")


# -- batch ---------------------------------------------------------------------------------

async def test_batch_in_order(client, fake_core):
    r = await client.post("/api/v1/batch/generate", json={"requests": [
        {"prompt": "问题1", "max_tokens": 2}, {"prompt": "问题2", "max_tokens": 5}, {"prompt": "问题3"}]})
    assert r.status_code == 200
    body = await json_of(r)
    assert [x["text"] for x in body["results"]] == [REPLY[:2], REPLY[:5], REPLY]
    assert all(x["usage"]["total_tokens"] > 0 for x in body["results"])
    rows = await wait_requests(fake_core, 3)
    assert {row["endpoint"] for row in rows} == {"/api/v1/batch/generate"}


async def test_batch_bad_items_get_error_entries_in_place(client):
    r = await client.post("/api/v1/batch/generate", json={"requests": [
        {"prompt": "ok", "max_tokens": 3},
        {"prompt": "hot", "temperature": 5},
        "not an object",
        {"prompt": "who", "model": "qwen-7b-chat"},
        {"max_tokens": 10},
        {"prompt": "ok again", "max_tokens": 4},
    ]})
    assert r.status_code == 200
    res = (await json_of(r))["results"]
    assert len(res) == 6
    assert res[0]["text"] == REPLY[:3] and res[5]["text"] == REPLY[:4]
    assert res[1]["error"]["code"] == "INVALID_REQUEST" and "requests[1].temperature" in res[1]["error"]["message"]
    assert res[2]["error"]["code"] == "INVALID_REQUEST" and "requests[2]" in res[2]["error"]["message"]
    assert res[3]["error"]["code"] == "MODEL_NOT_FOUND" and res[3]["error"]["details"]["available"] == ["tiny"]
    assert res[4]["error"]["code"] == "INVALID_REQUEST" and "requests[4].prompt" in res[4]["error"]["message"]
    for i in (1, 2, 3, 4):
        assert set(res[i]) == {"error"}


async def test_batch_items_run_concurrently(core_factory):
    """All items are submitted before the first finishes: the engine sees them together."""
    core = await core_factory(FakeEngine(delay_s=0.01))
    client = create_app(core).test_client()
    seen = []
    real = core.inference.generate

    async def spy(req):
        gen = await real(req)
        seen.append(core.fleet.get("tiny").info().queued + core.fleet.get("tiny").info().active)
        return gen

    core.inference.generate = spy
    r = await client.post("/api/v1/batch/generate", json={"requests": [{"prompt": "p", "max_tokens": 5}] * 4})
    assert r.status_code == 200
    assert max(seen) >= 3, seen


async def test_batch_over_the_bound_is_400(core_factory):
    core = await core_factory(**{"server.max_batch_size": 2})
    client = create_app(core).test_client()
    r = await client.post("/api/v1/batch/generate", json={"requests": [{"prompt": "a"}] * 3})
    assert r.status_code == 400
    err = assert_error(await json_of(r), "INVALID_REQUEST", "at most 2")
    assert err["details"] == {"max_batch_size": 2, "received": 3}
    assert core.fleet.get("tiny").completed == 0
    ok = await client.post("/api/v1/batch/generate", json={"requests": [{"prompt": "a"}] * 2})
    assert ok.status_code == 200


@pytest.mark.parametrize("body", [{}, {"requests": []}, {"requests": "x"}, {"requests": {"prompt": "a"}}])
async def test_batch_bad_envelope(client, body):
    r = await client.post("/api/v1/batch/generate", json=body)
    assert r.status_code == 400
    assert_error(await json_of(r), "INVALID_REQUEST", "requests")


# -- metrics -------------------------------------------------------------------------------

async def test_metrics(client, fake_core):
    await client.post("/api/v1/generate", json={"prompt": "hi"})
    await client.post("/api/v1/generate", json={"prompt": "hi", "max_tokens": 3})
    await client.post("/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
    await wait_requests(fake_core, 3)
    for path in ("/metrics", "/api/v1/metrics"):
        r = await client.get(path)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.get_data(as_text=True)
        assert "# TYPE model_inference_seconds histogram" in text
        assert "# TYPE active_connections gauge" in text
        s = samples(text)
        assert s[("llmd_requests_total", (("dialect", "api_v1"), ("model", "tiny"), ("status", "ok")))] == 1
        assert s[("llmd_requests_total", (("dialect", "api_v1"), ("model", "tiny"), ("status", "length")))] == 1
        assert s[("llmd_requests_total", (("dialect", "openai"), ("model", "tiny"), ("status", "ok")))] == 1
        assert s[("model_inference_seconds_count", ())] == 3
        for le in ("1.0", "3.0", "5.0", "+Inf"):
            assert s[("model_inference_seconds_bucket", (("le", le),))] == 3
        assert s[("llmd_completion_tokens_total", (("model", "tiny"),))] == 2 * len(REPLY) + 3
        assert s[("llmd_prompt_tokens_total", (("model", "tiny"),))] > 0
        assert s[("llmd_time_to_first_token_seconds_count", (("model", "tiny"),))] == 3
        assert s[("active_connections", ())] == 0
        assert s[("llmd_model_loaded", (("model", "tiny"),))] == 1
        assert s[("llmd_model_state", (("model", "tiny"), ("state", "running")))] == 1
        assert s[("llmd_queue_length", (("model", "tiny"),))] == 0
        assert s[("llmd_active_slots", (("model", "tiny"),))] == 0
        assert s[("llmd_process_resident_memory_bytes", ())] > 0
        assert s[("llmd_process_cpu_seconds_total", ())] > 0


async def test_metrics_are_per_core(core_factory):
    a, b = await core_factory(), await core_factory()
    await create_app(a).test_client().post("/api/v1/generate", json={"prompt": "hi"})
    await wait_requests(a, 1)
    sa = samples(await (await create_app(a).test_client().get("/metrics")).get_data(as_text=True))
    sb = samples(await (await create_app(b).test_client().get("/metrics")).get_data(as_text=True))
    assert sa[("model_inference_seconds_count", ())] == 1
    assert sb[("model_inference_seconds_count", ())] == 0


# -- errors and routing ---------------------------------------------------------------------

async def test_unknown_path_and_method(client):
    r = await client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert_error(await json_of(r), "NOT_FOUND")
    r = await client.get("/api/v1/generate")
    assert r.status_code == 405
    assert_error(await json_of(r), "METHOD_NOT_ALLOWED", "GET")


# -- rate limiting ---------------------------------------------------------------------------

@pytest.fixture
async def limited(core_factory):
    """An app whose clients get 2 requests at once, refilled at 1 a minute."""
    core = await core_factory(**{"ratelimit.enabled": "on", "ratelimit.burst": 2,
                                 "ratelimit.requests_per_minute": 1})
    return core, create_app(core).test_client()


async def test_rate_limit_headers_and_429(limited):
    core, client = limited
    seen = []
    for _ in range(2):
        r = await client.get("/api/v1/health", scope_base=LAN)
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Limit"] == "2"
        seen.append(int(r.headers["X-RateLimit-Remaining"]))
        reset = int(r.headers["X-RateLimit-Reset"])
        assert reset > 1_600_000_000
    assert seen == [1, 0]
    r = await client.post("/api/v1/generate", json={"prompt": "hi"}, scope_base=LAN)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["X-RateLimit-Remaining"] == "0"
    err = assert_error(await json_of(r), "RATE_LIMITED")
    assert err["details"]["limit"] == 2
    assert core.fleet.get("tiny").completed == 0
    # the OpenAI dialect answers in its own envelope
    r = await client.get("/v1/models", scope_base=LAN)
    assert r.status_code == 429
    body = await json_of(r)
    assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "rate_limited"
    text = await (await client.get("/metrics")).get_data(as_text=True)
    s = samples(text)
    assert s[("llmd_rate_limited_requests_total", (("dialect", "api_v1"),))] == 1
    assert s[("llmd_rate_limited_requests_total", (("dialect", "openai"),))] == 1


async def test_rate_limit_is_per_client(limited):
    _, client = limited
    for _ in range(3):
        await client.get("/api/v1/health", scope_base=LAN)
    other = {"client": ("192.0.2.11", 40000)}
    assert (await client.get("/api/v1/health", scope_base=other)).status_code == 200
    # an API key is its own client, whatever the address
    for header in ({"Authorization": "Bearer key-a"}, {"X-API-Key": "key-b"}):
        r = await client.get("/api/v1/health", scope_base=LAN, headers=header)
        assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "1"
    r = await client.get("/api/v1/health", scope_base=other, headers={"Authorization": "Bearer key-a"})
    assert r.headers["X-RateLimit-Remaining"] == "0"  # same key, other address: same bucket


async def test_rate_limit_exempts_unix_socket_and_other_paths(limited):
    _, client = limited
    for _ in range(5):  # no client address in the scope: a Unix-socket peer
        r = await client.get("/api/v1/health")
        assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers
    for _ in range(3):  # seed 003's /health and /metrics are outside /api/v1 and /v1
        r = await client.get("/health", scope_base=LAN)
        assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers


async def test_rate_limit_auto_follows_the_bind_address(core_factory):
    loopback = await core_factory()  # server.host 127.0.0.1
    app = create_app(loopback)
    assert app.extensions["llmd_ratelimiter"] is None
    r = await app.test_client().get("/api/v1/health", scope_base=LAN)
    assert "X-RateLimit-Limit" not in r.headers
    lan = await core_factory(**{"server.host": "0.0.0.0"})
    app = create_app(lan)
    assert app.extensions["llmd_ratelimiter"] is not None
    r = await app.test_client().get("/api/v1/health", scope_base=LAN)
    assert r.headers["X-RateLimit-Limit"] == "100"
    off = await core_factory(**{"server.host": "0.0.0.0", "ratelimit.enabled": "off"})
    assert create_app(off).extensions["llmd_ratelimiter"] is None


async def test_rate_limit_covers_every_dialects_inference_routes(limited):
    """An empty bucket is empty on seed 002's and seed 004's inference routes too, each in its envelope."""
    core, client = limited
    for _ in range(2):
        await client.get("/api/v1/health", scope_base=LAN)
    dep = core.fleet.get("tiny").id
    for path, body in ((f"/api/chat/{dep}", {"messages": [{"role": "user", "content": "hi"}]}),
                       (f"/api/completions/{dep}", {"prompt": "hi"}),
                       ("/api/models/tiny/generate", {"prompt": "hi"})):
        r = await client.post(path, json=body, scope_base=LAN)
        assert r.status_code == 429 and r.headers["Retry-After"], (path, r.status_code)
        text = await r.get_data(as_text=True)
        assert "RATE_LIMITED" in text, (path, text)
    assert core.fleet.get("tiny").completed == 0
