"""Seed 004 deployment, chat and system routes on the FakeEngine."""

from __future__ import annotations

import asyncio
import json

import gguf
import numpy as np
import pytest
from helpers import parse_sse, write_tiny_gguf

from llmd.http import create_app


async def body_of(r):
    return json.loads(await r.get_data(as_text=True))


def assert_ok(body, code=200):
    assert body["success"] is True and body["code"] == code and "timestamp" in body, body
    return body["data"]


def assert_err(body, code):
    assert body["success"] is False and body["error"] == code, body
    assert body["message"] and "timestamp" in body
    return body


class FakeListeners:
    """Records the ports Core asks for; 4242 is "taken"."""

    def __init__(self):
        self.started, self.stopped = [], []

    async def start(self, port, model):
        from llmd.errors import ConflictError

        if port == 4242:
            raise ConflictError("cannot serve port 4242: it is already in use by another process", field="port")
        self.started.append((port, model))

    async def stop(self, port):
        self.stopped.append(port)


@pytest.fixture
async def setup(core_factory, tmp_path):
    core = await core_factory(**{"deployments.keep_alive_s": 0})
    core.fleet.ports.listeners = FakeListeners()
    await core.registry.add_file(write_tiny_gguf(tmp_path / "two.Q4_1.gguf"), "two")
    return core, create_app(core).test_client()


async def start(client, model="two", code=201, **extra):
    r = await client.post("/api/deployments/start", json={"model_id": model, **extra})
    body = await body_of(r)
    assert r.status_code == code, body
    return assert_ok(body, code)


async def test_start_get_list_stop_restart_delete(setup):
    core, client = setup
    data = await start(client, "two", model_source="local", max_model_len=128)
    dep_id = data["deployment_id"]
    assert dep_id.startswith("deploy_") and data["model_id"] == "two"
    assert data["status"] in ("starting", "running") and data["max_model_len"] == 128
    await core.fleet.get("two").wait_loaded(5)
    got = assert_ok(await body_of(await client.get(f"/api/deployments/{dep_id}")))
    assert got["status"] == "running" and got["model_source"] == "local" and got["started_at"]
    # the same model and settings again: the same deployment, 200
    again = await start(client, "two", code=200, max_model_len=128)
    assert again["deployment_id"] == dep_id
    listed = assert_ok(await body_of(await client.get("/api/deployments/list?status=running")))
    assert {i["deployment_id"] for i in listed["items"]} >= {dep_id}
    stopped = assert_ok(await body_of(await client.put(f"/api/deployments/{dep_id}/stop")))
    assert stopped["status"] == "stopped" and stopped["stop_reason"] == "stopped"
    assert core.fleet.get("two") is None
    r = await client.put(f"/api/deployments/{dep_id}/stop")
    assert r.status_code == 409
    assert_err(await body_of(r), "INVALID_ACTION")
    # still visible while stopped, with its logs
    assert assert_ok(await body_of(await client.get(f"/api/deployments/{dep_id}")))["status"] == "stopped"
    logs = assert_ok(await body_of(await client.get(f"/api/deployments/{dep_id}/logs?lines=50")))["logs"]
    assert any("fake load of" in x["message"] for x in logs)
    assert any(x["message"] == "state stopped" for x in logs)
    restarted = assert_ok(await body_of(await client.put(f"/api/deployments/{dep_id}/restart")))
    assert restarted["deployment_id"] == dep_id and restarted["status"] == "running"
    assert restarted["max_model_len"] == 128
    r = await client.delete(f"/api/deployments/{dep_id}")
    assert assert_ok(await body_of(r))["deleted"] is True
    assert core.fleet.get("two") is None
    r = await client.get(f"/api/deployments/{dep_id}")
    assert r.status_code == 404
    assert_err(await body_of(r), "DEPLOYMENT_NOT_FOUND")


async def test_chat_and_completions_plain_and_streamed(setup):
    core, client = setup
    dep_id = core.fleet.get("tiny").id
    r = await client.post(f"/api/chat/{dep_id}", json={"messages": [{"role": "user", "content": "Hello!"}],
                                                       "stream": False, "temperature": 0.7, "max_tokens": 5,
                                                       "top_p": 0.9})
    data = assert_ok(await body_of(r))
    assert data["object"] == "chat.completion" and data["model"] == "tiny"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "Hello"}
    assert data["usage"]["completion_tokens"] == 5
    r = await client.post(f"/api/chat/{dep_id}", json={"messages": [{"role": "user", "content": "Hi"}],
                                                       "stream": True, "max_tokens": 3})
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = parse_sse(await r.get_data(as_text=True))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hel"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    r = await client.post(f"/api/completions/{dep_id}", json={"prompt": "Once upon a time", "max_tokens": 4})
    data = assert_ok(await body_of(r))
    assert data["object"] == "text_completion" and data["choices"][0]["text"] == "Hell"
    r = await client.post(f"/api/completions/{dep_id}", json={"prompt": "Once", "max_tokens": 2, "stream": True})
    events = parse_sse(await r.get_data(as_text=True))
    assert events[-1] == "[DONE]" and json.loads(events[0])["object"] == "text_completion"


async def test_error_codes_in_the_seed_envelope(setup, tmp_path):
    core, client = setup
    r = await client.post("/api/chat/deploy_999", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404
    assert_err(await body_of(r), "DEPLOYMENT_NOT_FOUND")
    r = await client.post("/api/deployments/start", json={"model_id": "nope"})
    assert r.status_code == 404
    assert_err(await body_of(r), "MODEL_NOT_FOUND")
    r = await client.post("/api/deployments/start", json={"model_id": "two", "model_source": "ftp"})
    assert r.status_code == 400
    assert_err(await body_of(r), "INVALID_SOURCE")
    # a stopped deployment
    data = await start(client, "two")
    await core.fleet.get("two").wait_loaded(5)
    await core.fleet.stop_model("two")
    r = await client.post(f"/api/chat/{data['deployment_id']}", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 409
    assert_err(await body_of(r), "DEPLOYMENT_NOT_RUNNING")
    r = await client.post(f"/api/completions/{data['deployment_id']}", json={"prompt": "x"})
    assert_err(await body_of(r), "DEPLOYMENT_NOT_RUNNING")
    # a model without a chat template
    path = tmp_path / "notemplate.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(256)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    await core.registry.add_file(path, "plain")
    plain = await start(client, "plain", wait=True)
    r = await client.post(f"/api/chat/{plain['deployment_id']}", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    assert_err(await body_of(r), "CHAT_NOT_SUPPORTED")
    r = await client.post(f"/api/completions/{plain['deployment_id']}", json={"prompt": "x", "max_tokens": 1})
    assert assert_ok(await body_of(r))["choices"][0]["text"] == "H"
    # bad input names the field
    r = await client.get("/api/deployments/list?status=flying")
    assert "status" in assert_err(await body_of(r), "INVALID_REQUEST")["message"]


async def test_insufficient_resources_has_the_figures(core_factory, tmp_path):
    core = await core_factory(**{"deployments.memory_budget_mb": 1})
    client = create_app(core).test_client()
    big = tmp_path / "big.gguf"
    write_tiny_gguf(big)
    with big.open("ab") as fh:
        fh.truncate(3 << 20)  # 3 MiB: more than the whole budget
    await core.registry.add_file(big, "big")
    r = await client.post("/api/deployments/start", json={"model_id": "big"})
    assert r.status_code == 503
    body = assert_err(await body_of(r), "INSUFFICIENT_RESOURCES")
    figures = body["details"]
    assert figures["budget_mb"] == 1.0 and figures["needed_mb"] >= 3.0
    assert {d["model"] for d in figures["deployments"]} == {"tiny"}
    assert core.fleet.get("big") is None


async def test_ports(setup):
    core, client = setup
    data = await start(client, "two", port=4300, wait=True)
    assert data["port"] == 4300 and core.fleet.ports.listeners.started == [(4300, "two")]
    r = await client.post("/api/deployments/start", json={"model_id": "tiny", "port": 4300})
    assert r.status_code == 409 and "4300" in assert_err(await body_of(r), "CONFLICT")["message"]
    r = await client.post("/api/deployments/start", json={"model_id": "tiny", "port": 4242, "max_model_len": 64})
    assert r.status_code == 409 and "in use" in (await body_of(r))["message"]
    assert core.fleet.get("tiny").state.value == "running"  # a refused start stopped nothing
    await client.put(f"/api/deployments/{data['deployment_id']}/stop")
    assert core.fleet.ports.listeners.stopped == [4300]


async def test_health_model_info_and_system_routes(setup):
    core, client = setup
    dep_id = core.fleet.get("tiny").id
    h = assert_ok(await body_of(await client.get(f"/api/deployments/{dep_id}/health")))
    assert h["status"] == "healthy" and h["healthy"] is True
    info = assert_ok(await body_of(await client.get(f"/api/deployments/{dep_id}/model-info")))
    assert info["model_id"] == "tiny" and info["chat_supported"] is True and info["quantization"] == "Q4_1"
    r = await client.get("/api/health")
    body = await body_of(r)
    assert body["status"] == "healthy" and body["api_version"] == "v1" and body["service"]
    res = assert_ok(await body_of(await client.get("/api/system/resources")))
    assert res["cpu"]["cores"] >= 1 and res["memory"]["total_gb"] > 0 and res["disk"]["total_gb"] > 0
    assert set(res["memory"]) >= {"total_gb", "used_gb", "available_gb", "usage_percent"}
    assert "available" in res["gpu"]
    load = assert_ok(await body_of(await client.get("/api/system/load")))
    assert "1m" in load["load_average"] and load["llmd"]["deployments_running"] >= 1
    sh = assert_ok(await body_of(await client.get("/api/system/health")))
    assert sh["status"] in ("healthy", "degraded") and set(sh["checks"]) == {"store", "disk", "engine"}


async def test_logs_follow_streams_new_lines(setup):
    core, client = setup
    dep_id = core.fleet.get("tiny").id

    async def read():
        async with client.request(f"/api/deployments/{dep_id}/logs?follow=true&lines=1") as conn:
            got = []
            while len(got) < 2:
                chunk = await conn.receive()
                got += [json.loads(e) for e in parse_sse(chunk.decode()) if e.startswith("{")]
            await conn.disconnect()
            return got

    task = asyncio.ensure_future(read())
    for _ in range(200):
        if core.events.subscribers:
            break
        await asyncio.sleep(0.01)
    core.fleet.get("tiny").log("info", "a new line")
    got = await asyncio.wait_for(task, 5)
    assert got[-1]["message"] == "a new line"


async def test_same_model_through_seed_001_and_seed_004_is_one_deployment(setup):
    core, client = setup
    r = await client.post("/api/v1/models/two/load", json={})
    assert r.status_code == 200
    data = await start(client, "two", code=200)
    assert data["deployment_id"] == core.fleet.get("two").id
    items = assert_ok(await body_of(await client.get("/api/deployments/list")))["items"]
    assert [i["model_id"] for i in items].count("two") == 1
