"""Seed 000 (EasyVizAI): every route, ranges, envelopes and the WebSocket chat, on the FakeEngine."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from helpers import parse_sse, settle, wait_requests, write_tiny_gguf

from llmd.config import load_config
from llmd.core import Core
from llmd.core.engine.fake import FakeEngine
from llmd.core.generation import answer_reserve, fit_history
from llmd.core.types import ChatMessage, DeploymentState
from llmd.http import create_app
from llmd.store import Store

API = "/api/v1/llm"
REPLY = "Hello from the fake engine."


@pytest.fixture
def client(fake_core):
    return create_app(fake_core).test_client()


async def body_of(resp) -> Any:
    return json.loads(await resp.get_data(as_text=True))


def spy_generate(core: Core) -> list:
    """Record every GenerateRequest the core receives."""
    seen: list = []
    real = core.inference.generate

    async def spy(req):
        seen.append(req)
        return await real(req)

    core.inference.generate = spy  # type: ignore[method-assign]
    return seen


async def recv(ws, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.receive(), timeout))


async def recv_until(ws, types: tuple[str, ...] = ("assistant_done", "assistant_message", "error"),
                     timeout: float = 10.0) -> list[dict[str, Any]]:
    """Messages up to and including the first whose type is in ``types``."""
    out = []
    while True:
        msg = await recv(ws, timeout)
        out.append(msg)
        if msg["type"] in types:
            return out


async def wait_idle(core: Core, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if all(d.info().active == 0 and d.info().queued == 0 for d in core.fleet.live()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the engine did not become idle")


# -- health and models ------------------------------------------------------------

async def test_health(client, fake_core):
    r = await client.get(f"{API}/health/")
    assert r.status_code == 200
    body = await body_of(r)
    assert body["status"] == "healthy"
    assert body["device"] == "cpu"
    assert body["loaded_models"] == ["tiny"]
    assert body["current_model"] == "tiny"
    assert body["active_connections"] == 0


async def test_health_degraded_when_the_current_model_is_unloaded(client, fake_core):
    await fake_core.fleet.unload("tiny")
    body = await body_of(await client.get(f"{API}/health/"))
    assert body["status"] == "degraded"
    assert body["loaded_models"] == []
    assert body["current_model"] == "tiny"


async def test_health_unhealthy_when_shutting_down_is_503(client, fake_core):
    fake_core.background.stopping = True
    r = await client.get(f"{API}/health/")
    assert r.status_code == 503
    assert (await body_of(r))["status"] == "unhealthy"
    fake_core.background.stopping = False


async def test_list_models(client, fake_core, tmp_path):
    await fake_core.models.add_file(str(write_tiny_gguf(tmp_path / "other.gguf")), "other")
    r = await client.get(f"{API}/models/")
    assert r.status_code == 200
    body = await body_of(r)
    assert body["current_model"] == "tiny"
    assert body["loaded_models"] == ["tiny"]
    assert body["device"] == "cpu"
    assert sorted(body["available_models"]) == ["other", "tiny"]
    assert body["aliases"] == {"default": "tiny"}


@pytest.mark.parametrize("key", ["tiny", "default"])
async def test_model_detail_by_name_or_alias(client, key):
    r = await client.get(f"{API}/models/{key}/")
    assert r.status_code == 200
    body = await body_of(r)
    assert body["name"] == "tiny"
    assert body["loaded"] is True
    cfg = body["config"]
    assert cfg["type"] == "causal_lm" and cfg["device"] == "cpu"
    assert cfg["model_path"].endswith("tiny.Q4_1.gguf")
    assert cfg["max_length"] == 512 and cfg["temperature"] == 0.7 and cfg["top_p"] == 0.9
    assert cfg["context_length"] == 256


async def test_model_detail_unknown_is_404_listing_names(client):
    r = await client.get(f"{API}/models/qwen/")
    assert r.status_code == 404
    body = await body_of(r)
    assert set(body) == {"error"}
    assert "qwen" in body["error"] and "available models: tiny" in body["error"]


async def test_unload_and_load_really_change_the_engine(client, fake_core):
    dep = fake_core.fleet.get("tiny")
    loaded = dep.loaded
    r = await client.post(f"{API}/models/tiny/unload/")
    assert r.status_code == 200
    assert (await body_of(r))["message"] == "Model tiny unloaded successfully"
    assert loaded.closed is True  # the model's memory is freed
    assert fake_core.fleet.get("tiny") is None
    detail = await body_of(await client.get(f"{API}/models/tiny/"))
    assert detail["loaded"] is False and detail["config"]["device"] is None

    r = await client.post(f"{API}/models/tiny/unload/")
    assert r.status_code == 200 and (await body_of(r))["was_loaded"] is False

    r = await client.post(f"{API}/models/default/load/")
    assert r.status_code == 200
    body = await body_of(r)
    assert body["message"] == "Model default loaded successfully"
    assert body["model"] == "tiny" and body["device"] == "cpu"
    assert fake_core.fleet.get("tiny").state is DeploymentState.RUNNING
    assert (await body_of(await client.get(f"{API}/health/")))["loaded_models"] == ["tiny"]


@pytest.mark.parametrize("action", ["load", "unload"])
async def test_load_unload_unknown_model_is_404(client, action):
    r = await client.post(f"{API}/models/qwen/{action}/")
    assert r.status_code == 404
    assert "available models: tiny" in (await body_of(r))["error"]


async def test_failed_load_is_503_envelope(core_factory):
    engine = FakeEngine()
    core = await core_factory(engine)
    await core.fleet.unload("tiny")
    engine.fail_load = True
    r = await create_app(core).test_client().post(f"{API}/models/tiny/load/")
    assert r.status_code == 503
    body = await body_of(r)
    assert set(body) == {"error"} and "failed to load" in body["error"]


# -- generate ----------------------------------------------------------------------

async def test_generate(client, fake_core):
    seen = spy_generate(fake_core)
    r = await client.post(f"{API}/generate/", json={
        "prompt": "你好，请介绍一下你自己。", "model": "tiny",
        "parameters": {"temperature": 0.7, "top_p": 0.9, "max_length": 100}})
    assert r.status_code == 200
    body = await body_of(r)
    assert body["response"] == REPLY
    assert body["model"] == "tiny"
    assert body["prompt"] == "你好，请介绍一下你自己。"
    req = seen[0]
    # the prompt is the user's turn through the chat template, not raw text
    assert req.prompt is None and req.messages == (ChatMessage("user", "你好，请介绍一下你自己。"),)
    assert req.params.max_tokens == 100 and req.params.temperature == 0.7 and req.params.top_p == 0.9
    assert req.dialect == "easyviz"


async def test_generate_default_model_and_alias(client):
    for body in ({"prompt": "hi"}, {"prompt": "hi", "model": "default"}):
        r = await client.post(f"{API}/generate/", json=body)
        assert r.status_code == 200
        assert (await body_of(r))["model"] == "tiny"


async def test_do_sample_false_is_greedy(client, fake_core):
    seen = spy_generate(fake_core)
    r = await client.post(f"{API}/generate/", json={"prompt": "hi", "parameters": {"do_sample": False,
                                                                                   "temperature": 1.5}})
    assert r.status_code == 200
    assert seen[0].params.temperature == 0.0
    r = await client.post(f"{API}/generate/", json={"prompt": "hi", "parameters": {"do_sample": True,
                                                                                   "temperature": 1.5}})
    assert seen[1].params.temperature == 1.5


@pytest.mark.parametrize("field,value", [
    ("max_length", 0), ("max_length", 4097), ("max_length", -1),
    ("temperature", -0.1), ("temperature", 2.01),
    ("top_p", -0.01), ("top_p", 1.01),
    ("do_sample", "yes"), ("max_length", "512"), ("temperature", "hot"),
])
@pytest.mark.parametrize("path", ["/generate/", "/generate/stream/"])
async def test_parameters_out_of_range_are_400_naming_the_field(client, fake_core, path, field, value):
    seen = spy_generate(fake_core)
    r = await client.post(f"{API}{path}", json={"prompt": "hi", "parameters": {field: value}})
    assert r.status_code == 400
    body = await body_of(r)
    assert set(body) == {"error"}
    assert f"parameters.{field}" in body["error"]
    assert seen == []  # never clamped and sent on


@pytest.mark.parametrize("field,value", [("max_length", 1), ("temperature", 0.0), ("temperature", 2),
                                         ("top_p", 0), ("top_p", 1.0), ("do_sample", False)])
async def test_parameters_at_the_bounds_are_accepted(client, field, value):
    r = await client.post(f"{API}/generate/", json={"prompt": "hi", "parameters": {field: value}})
    assert r.status_code == 200, await r.get_data(as_text=True)


async def test_max_length_4096_passes_the_schema_but_not_the_tiny_context(client):
    # 4096 is in the document's range; the tiny model's context (256) is what refuses it, naming both
    r = await client.post(f"{API}/generate/", json={"prompt": "hi", "parameters": {"max_length": 4096}})
    assert r.status_code == 400
    assert "context length (256)" in (await body_of(r))["error"]


@pytest.mark.parametrize("payload,names", [
    ({}, "prompt"), ({"prompt": ""}, "prompt"), ({"prompt": 5}, "prompt"),
    ({"prompt": "hi", "model": 3}, "model"), ({"prompt": "hi", "parameters": 3}, "parameters"),
])
async def test_bad_bodies_are_400(client, payload, names):
    r = await client.post(f"{API}/generate/", json=payload)
    assert r.status_code == 400
    assert names in (await body_of(r))["error"]


async def test_not_json_is_400(client):
    r = await client.post(f"{API}/generate/", data=b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert set(await body_of(r)) == {"error"}


@pytest.mark.parametrize("path", ["/generate/", "/generate/stream/"])
async def test_unknown_model_is_404_listing_names_never_rerouted(client, fake_core, path):
    seen = spy_generate(fake_core)
    r = await client.post(f"{API}{path}", json={"prompt": "hi", "model": "qwen"})
    assert r.status_code == 404
    body = await body_of(r)
    assert set(body) == {"error"}
    assert "'qwen'" in body["error"] and "available models: tiny" in body["error"]
    assert fake_core.fleet.get("tiny").completed == 0
    assert len(seen) == 1  # refused by the core, not sent to another model


async def test_model_not_loaded_is_503_with_retry_after(client, fake_core):
    fake_core.config.deployments.load_on_demand = False  # with it (the default), the request loads the model
    await fake_core.fleet.unload("tiny")
    for path in ("/generate/", "/generate/stream/"):
        r = await client.post(f"{API}{path}", json={"prompt": "hi"})
        assert r.status_code == 503
        assert r.headers["Retry-After"]
        assert "not loaded" in (await body_of(r))["error"]


async def test_busy_is_503_with_retry_after(core_factory):
    # 1 s per token: the first request generates for ~4 s, long enough to fill the queue behind it.
    core = await core_factory(FakeEngine(delay_s=1.0), **{"engine.queue_size": 1, "engine.parallel": 1})
    client = create_app(core).test_client()
    short = {"max_length": 4}
    dep = core.fleet.get("tiny")

    async def until(cond) -> dict:
        for _ in range(2000):
            stats = dep.info()
            if cond(stats):
                return stats
            await asyncio.sleep(0.01)
        raise AssertionError(stats)

    # One at a time: a request counts as queued until the scheduler takes it, so the second is sent
    # only once the first is generating (else the one-place queue would refuse it).
    first = asyncio.ensure_future(client.post(f"{API}/generate/", json={"prompt": "a", "parameters": short}))
    await until(lambda s: s.active == 1 and s.queued == 0)
    second = asyncio.ensure_future(client.post(f"{API}/generate/", json={"prompt": "b", "parameters": short}))
    await until(lambda s: s.active == 1 and s.queued == 1)
    r = await client.post(f"{API}/generate/", json={"prompt": "c"})
    assert r.status_code == 503
    assert r.headers["Retry-After"]
    assert "busy" in (await body_of(r))["error"]
    assert (await first).status_code == 200 and (await second).status_code == 200


async def test_engine_failure_is_500_envelope(core_factory):
    core = await core_factory(FakeEngine(fail_after=3))
    r = await create_app(core).test_client().post(f"{API}/generate/", json={"prompt": "hi"})
    assert r.status_code == 500
    body = await body_of(r)
    assert set(body) == {"error"} and "generation failed" in body["error"]


async def test_generate_stream(client):
    r = await client.post(f"{API}/generate/stream/", json={"prompt": "请介绍一下人工智能的发展历史",
                                                           "model": "tiny", "parameters": {"temperature": 0.7}})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = [json.loads(e) for e in parse_sse(await r.get_data(as_text=True))]
    assert events[-1]["done"] is True
    assert events[-1]["finish_reason"] == "stop"
    chunks = events[:-1]
    assert chunks and all(set(e) == {"chunk"} for e in chunks)
    assert "".join(e["chunk"] for e in chunks) == REPLY


async def test_generate_stream_error_mid_stream_is_a_final_error_event(core_factory):
    core = await core_factory(FakeEngine(fail_after=3))
    r = await create_app(core).test_client().post(f"{API}/generate/stream/", json={"prompt": "hi"})
    assert r.status_code == 200
    events = [json.loads(e) for e in parse_sse(await r.get_data(as_text=True))]
    assert "".join(e.get("chunk", "") for e in events[:-1]) == REPLY[:3]
    assert set(events[-1]) == {"error"} and "generation failed" in events[-1]["error"]
    assert not any(e.get("done") for e in events)


async def test_unknown_path_and_wrong_method(client):
    r = await client.get(f"{API}/nothing-here/")
    assert r.status_code == 404 and set(await body_of(r)) == {"error"}
    r = await client.get(f"{API}/generate/")
    assert r.status_code == 405 and "GET" in (await body_of(r))["error"]


async def test_routes_without_the_trailing_slash_redirect(client):
    r = await client.get(f"{API}/health")
    assert r.status_code == 308 and r.headers["Location"].endswith(f"{API}/health/")


# -- WebSocket chat ------------------------------------------------------------------

async def test_ws_stream_chat(client, fake_core):
    async with client.websocket("/ws/chat/demo_session/") as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "你好，请介绍一下你自己。", "model": "tiny",
                                  "stream": True, "timestamp": "2024-01-01T12:00:00Z"}))
        msgs = await recv_until(ws)
    chunks, done = msgs[:-1], msgs[-1]
    assert chunks and all(m["type"] == "assistant_chunk" and m["model"] == "tiny" for m in chunks)
    assert "".join(m["chunk"] for m in chunks) == REPLY
    assert done["type"] == "assistant_done"
    assert done["content"] == REPLY and done["model"] == "tiny" and done["finish_reason"] == "stop"
    assert done["usage"]["completion_tokens"] == len(REPLY) and done["usage"]["prompt_tokens"] > 0
    assert done["timing"]["duration"] >= done["timing"]["ttft"] >= 0


async def test_ws_stream_defaults_to_true_and_non_stream_is_one_message(client):
    async with client.websocket("/ws/chat/s/") as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "hi"}))
        msgs = await recv_until(ws)
        assert msgs[0]["type"] == "assistant_chunk" and msgs[-1]["type"] == "assistant_done"
        await ws.send(json.dumps({"type": "chat_message", "message": "again", "stream": False}))
        msg = await recv(ws)
    assert msg["type"] == "assistant_message"
    assert msg["content"] == REPLY and msg["model"] == "tiny"
    assert msg["usage"]["completion_tokens"] == len(REPLY) and "ttft" in msg["timing"]


@pytest.mark.parametrize("raw,names", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"type": "shout", "message": "x"}), "unknown message type 'shout'"),
    (json.dumps({"message": "x"}), "unknown message type"),
    (json.dumps({"type": "chat_message"}), "message"),
    (json.dumps({"type": "chat_message", "message": ""}), "message"),
    (json.dumps({"type": "chat_message", "message": "x", "stream": "yes"}), "stream"),
    (json.dumps({"type": "chat_message", "message": "x", "parameters": {"max_length": 0}}),
     "parameters.max_length"),
    (json.dumps({"type": "chat_message", "message": "x", "parameters": {"temperature": 3}}),
     "parameters.temperature"),
    (json.dumps({"type": "chat_message", "message": "x", "model": "qwen"}), "available models: tiny"),
    (json.dumps({"type": "model_switch", "model": "qwen"}), "available models: tiny"),
    (json.dumps({"type": "model_switch"}), "model"),
])
async def test_ws_errors_keep_the_socket_open(client, fake_core, raw, names):
    async with client.websocket("/ws/chat/errs/") as ws:
        await ws.send(raw)
        err = await recv(ws)
        assert err["type"] == "error" and names in err["error"]
        # still open, and the session is usable
        await ws.send(json.dumps({"type": "chat_message", "message": "hi", "stream": False}))
        assert (await recv(ws))["type"] == "assistant_message"
    rows = await fake_core.sessions.history("errs")
    assert [r["content"] for r in rows] == ["hi", REPLY]  # refused messages leave no trace


async def test_ws_model_not_loaded_is_an_error(client, fake_core):
    fake_core.config.deployments.load_on_demand = False
    await fake_core.fleet.unload("tiny")
    async with client.websocket("/ws/chat/s/") as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "hi"}))
        err = await recv(ws)
    assert err["type"] == "error" and "not loaded" in err["error"]
    assert await fake_core.sessions.history("s") == []


async def test_ws_model_switch_persists(client, fake_core, tmp_path):
    await fake_core.models.add_file(str(write_tiny_gguf(tmp_path / "other.gguf")), "other")
    await fake_core.fleet.load("other")
    async with client.websocket("/ws/chat/sw/") as ws:
        await ws.send(json.dumps({"type": "model_switch", "model": "other"}))
        assert await recv(ws) == {"type": "model_switched", "model": "other"}
        await ws.send(json.dumps({"type": "chat_message", "message": "hi"}))
        msgs = await recv_until(ws)
        assert {m["model"] for m in msgs} == {"other"}
        # a per-message model is for that answer only
        await ws.send(json.dumps({"type": "chat_message", "message": "hi", "model": "tiny", "stream": False}))
        assert (await recv(ws))["model"] == "tiny"
    assert (await fake_core.sessions.get("sw")).model == "other"
    async with client.websocket("/ws/chat/sw/") as ws:  # reconnect: the session remembers its model
        await ws.send(json.dumps({"type": "chat_message", "message": "again", "stream": False}))
        assert (await recv(ws))["model"] == "other"
        await ws.send(json.dumps({"type": "model_switch", "model": "default"}))
        assert await recv(ws) == {"type": "model_switched", "model": "tiny"}


async def test_ws_history_is_sent_each_turn_and_persisted(client, fake_core):
    seen = spy_generate(fake_core)
    async with client.websocket("/ws/chat/alice/") as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "My name is Alice."}))
        first = (await recv_until(ws))[-1]
        await ws.send(json.dumps({"type": "chat_message", "message": "What is my name?"}))
        second = (await recv_until(ws))[-1]
    assert seen[1].messages == (ChatMessage("user", "My name is Alice."), ChatMessage("assistant", REPLY),
                                ChatMessage("user", "What is my name?"))
    assert second["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]
    rows = await fake_core.sessions.history("alice")
    assert [(r["role"], r["content"], r["status"]) for r in rows] == [
        ("user", "My name is Alice.", "ok"), ("assistant", REPLY, "ok"),
        ("user", "What is my name?", "ok"), ("assistant", REPLY, "ok")]
    # reconnecting continues the conversation
    async with client.websocket("/ws/chat/alice/") as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "And again?", "stream": False}))
        await recv(ws)
    assert len(seen[2].messages) == 5
    # other sessions are separate
    async with client.websocket("/ws/chat/bob/") as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "Hi", "stream": False}))
        await recv(ws)
    assert seen[3].messages == (ChatMessage("user", "Hi"),)


async def test_ws_history_survives_a_core_restart(tmp_path, tiny_gguf):
    (tmp_path / "llmd.toml").write_text("")
    cfg = load_config(config_file=tmp_path / "llmd.toml", env={}, flags={
        "paths.state_dir": str(tmp_path / "state"), "paths.runtime_dir": str(tmp_path / "run"),
        "models.discover_bundled": False, "models.default": "tiny"})

    async def start() -> tuple[Core, Store]:
        store = Store(cfg.db_path)
        await store.open()
        core = Core(cfg, store, FakeEngine())
        if await core.registry.find("tiny") is None:
            await core.registry.add_file(tiny_gguf, "tiny")
        await core.start()
        await core.fleet.get("tiny").wait_loaded(10)
        return core, store

    core, store = await start()
    async with create_app(core).test_client().websocket("/ws/chat/keep/") as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "My name is Alice.", "stream": False,
                                  "system": "You are terse."}))
        first = await recv(ws)
    await core.shutdown()
    await store.close()

    core, store = await start()
    try:
        seen = spy_generate(core)
        async with create_app(core).test_client().websocket("/ws/chat/keep/") as ws:
            await ws.send(json.dumps({"type": "chat_message", "message": "What is my name?", "stream": False}))
            second = await recv(ws)
        assert seen[0].messages == (ChatMessage("system", "You are terse."), ChatMessage("user", "My name is Alice."),
                                    ChatMessage("assistant", REPLY), ChatMessage("user", "What is my name?"))
        assert second["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]
    finally:
        await core.shutdown()
        await store.close()


async def test_ws_in_band_cancel_frees_the_engine(core_factory):
    core = await core_factory(FakeEngine(reply="x" * 200, delay_s=0.01))
    client = create_app(core).test_client()
    async with client.websocket("/ws/chat/c/") as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "hi"}))
        assert (await recv(ws))["type"] == "assistant_chunk"
        await ws.send(json.dumps({"type": "cancel"}))
        msgs = await recv_until(ws)
        done = msgs[-1]
        assert done["type"] == "assistant_done" and done["finish_reason"] == "cancelled"
        assert 0 < len(done["content"]) < 200
        await wait_idle(core)
        # the socket stays usable; a cancel with no answer running is a no-op
        await ws.send(json.dumps({"type": "cancel"}))
        await ws.send(json.dumps({"type": "chat_message", "message": "next", "stream": False,
                                  "parameters": {"max_length": 5}}))
        nxt = await recv(ws)
        assert nxt["type"] == "assistant_message" and nxt["finish_reason"] == "length"
    rows = await wait_requests(core, 2)
    assert rows[-1]["status"] == "cancelled" and rows[-1]["dialect"] == "easyviz"
    hist = await core.sessions.history("c")
    assert [(r["role"], r["status"]) for r in hist] == [("user", "ok"), ("assistant", "cancelled"),
                                                        ("user", "ok"), ("assistant", "length")]
    assert hist[1]["content"] == done["content"]


async def test_ws_closing_mid_answer_cancels_generation(core_factory):
    engine = FakeEngine(reply="y" * 500, delay_s=0.01)
    core = await core_factory(engine)
    client = create_app(core).test_client()
    async with client.websocket("/ws/chat/gone/") as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "hi"}))
        assert (await recv(ws))["type"] == "assistant_chunk"
        assert core.streams.active == 1
    await wait_idle(core)
    rows = await wait_requests(core, 1)
    assert rows[0]["status"] == "cancelled"
    assert rows[0]["completion_tokens"] < 500
    await settle(core)
    assert core.streams.active == 0
    hist = await core.sessions.history("gone")
    assert [(r["role"], r["status"]) for r in hist] == [("user", "ok"), ("assistant", "cancelled")]
    assert 0 < len(hist[1]["content"]) < 500


async def test_ws_failure_mid_answer_is_an_error_and_the_socket_stays_open(core_factory):
    engine = FakeEngine(fail_after=4)
    core = await core_factory(engine)
    client = create_app(core).test_client()
    async with client.websocket("/ws/chat/f/") as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "hi"}))
        msgs = await recv_until(ws)
        err = msgs[-1]
        assert err["type"] == "error" and "generation failed" in err["error"]
        assert err["finish_reason"] == "error" and err["content"] == REPLY[:4]
        core.fleet.get("tiny").loaded._fail_after = None  # the loaded fake model took a copy
        await ws.send(json.dumps({"type": "chat_message", "message": "again", "stream": False}))
        assert (await recv(ws))["type"] == "assistant_message"
    hist = await core.sessions.history("f")
    assert [(r["role"], r["status"]) for r in hist] == [("user", "ok"), ("assistant", "error"),
                                                        ("user", "ok"), ("assistant", "ok")]


async def test_ws_a_second_message_while_answering_is_refused(core_factory):
    core = await core_factory(FakeEngine(delay_s=0.01))
    client = create_app(core).test_client()
    async with client.websocket("/ws/chat/busy/") as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "first"}))
        await ws.send(json.dumps({"type": "chat_message", "message": "second"}))
        msgs = await recv_until(ws, types=("assistant_done",))
    errors = [m for m in msgs if m["type"] == "error"]
    assert len(errors) == 1 and "in progress" in errors[0]["error"]
    assert msgs[-1]["content"] == REPLY
    assert [r["content"] for r in await core.sessions.history("busy")] == ["first", REPLY]


async def test_ws_counts_in_active_streams_and_health(client, fake_core):
    async with client.websocket("/ws/chat/n/") as ws:
        await ws.send(json.dumps({"type": "model_switch", "model": "tiny"}))
        await recv(ws)
        assert fake_core.streams.active == 1
        body = await body_of(await client.get(f"{API}/health/"))
        assert body["active_connections"] == 1
    await settle(fake_core)
    for _ in range(100):
        if fake_core.streams.active == 0:
            break
        await asyncio.sleep(0.01)
    assert fake_core.streams.active == 0


async def test_ws_invalid_session_id_is_refused(client):
    async with client.websocket(f"/ws/chat/{'x' * 200}/") as ws:
        err = await recv(ws)
    assert err["type"] == "error" and "session id" in err["error"]


async def test_ws_history_is_trimmed_to_the_token_budget(client, fake_core):
    # The tiny model: 256-token context, 1 fake token per 4 bytes; a default answer reserves 128.
    seen = spy_generate(fake_core)
    long = "z" * 200  # 50 tokens a turn
    async with client.websocket("/ws/chat/trim/") as ws:
        for i in range(6):
            await ws.send(json.dumps({"type": "chat_message", "message": f"{i} {long}", "stream": False,
                                      "system": "SYSTEM PROMPT" if i == 0 else None}))
            msg = await recv(ws)
            assert msg["type"] == "assistant_message", msg
            assert msg["usage"]["prompt_tokens"] <= 256 - 128
    last = seen[-1].messages
    assert last[0] == ChatMessage("system", "SYSTEM PROMPT")  # the system prompt is kept
    assert last[-1].content.startswith("5 ")  # the new message is kept
    assert last[1].role == "user"  # whole turns are dropped
    assert len(last) < 1 + 2 * 6  # older turns were dropped
    assert len(await fake_core.sessions.history("trim")) == 12  # the store keeps everything


# -- the domain helpers --------------------------------------------------------------

class _CountingModel:
    """One token per character of the rendered chat."""

    def render_chat(self, messages):
        return "".join(f"{m.role}:{m.content}|" for m in messages)

    def tokenize(self, text):
        return list(range(len(text)))


def test_fit_history_keeps_system_and_newest_whole_turns():
    hist = [ChatMessage("user", "a" * 10), ChatMessage("assistant", "b" * 10),
            ChatMessage("user", "c" * 10), ChatMessage("assistant", "d" * 10)]
    new = ChatMessage("user", "new")
    model = _CountingModel()
    msgs, dropped = fit_history(model, "sys", hist, new, budget=1000)
    assert dropped == 0 and msgs == [ChatMessage("system", "sys"), *hist, new]
    msgs, dropped = fit_history(model, "sys", hist, new, budget=len(model.render_chat(
        [ChatMessage("system", "sys"), *hist[2:], new])))
    assert dropped == 2 and msgs == [ChatMessage("system", "sys"), *hist[2:], new]
    msgs, dropped = fit_history(model, None, hist, new, budget=1)
    assert dropped == 4 and msgs == [new]
    # a history that starts with an orphan assistant turn never starts the kept part
    msgs, _ = fit_history(model, None, hist[1:], new, budget=1000)
    assert msgs[0].role == "user"


def test_answer_reserve():
    assert answer_reserve(4096, None, 512) == 512
    assert answer_reserve(256, None, 512) == 128
    assert answer_reserve(256, 100, 512) == 100
