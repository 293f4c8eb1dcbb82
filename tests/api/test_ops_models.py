"""Seed 002's model routes on a FakeEngine: registry CRUD, paging, filters, validation, delete, lifecycle tasks."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import parse_sse, wait_requests, write_tiny_gguf

from llmd.core.engine.fake import FakeEngine
from llmd.http import create_app


async def body_of(r):
    return json.loads(await r.get_data(as_text=True))


def assert_error(body, code: str, *needles: str) -> dict:
    """Seed 002's envelope: {"error": {"code", "message", "details"}, "timestamp", "path"}."""
    assert set(body) == {"error", "timestamp", "path"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert err["code"] == code, err
    text = json.dumps(err)
    for n in needles:
        assert n in text, (n, err)
    assert body["timestamp"].endswith("Z") and body["path"].startswith("/api/")
    return err


async def wait_task(client, task_id: str) -> dict:
    for _ in range(3000):  # ~60 s: a hang guard, not a timing check
        r = await client.get(f"/api/tasks/{task_id}")
        assert r.status_code == 200
        task = await body_of(r)
        if task["status"] in ("completed", "failed"):
            return task
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} did not finish: {task}")


@pytest.fixture
def client(fake_core):
    return create_app(fake_core).test_client()


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "other.Q8_0.gguf", file_type=7)


async def create(client, name: str, path: Path | str, **extra) -> dict:
    r = await client.post("/api/models", json={"name": name, "config": {"model_path": str(path)}, **extra})
    assert r.status_code == 201, await r.get_data(as_text=True)
    return await body_of(r)


# -- registry ---------------------------------------------------------------------------

async def test_create_get_by_id_name_and_alias(client, gguf):
    created = await create(client, "chat-a", gguf, display_name="我的模型", description="d", priority=7,
                           tags=["production", "chat"], resource_requirements={"cpu_cores": 4, "memory": 512})
    assert created["status"] == "created" and created["name"] == "chat-a"
    assert created["id"].startswith("model-")
    for ref in (created["id"], "chat-a"):
        m = await body_of(await client.get(f"/api/models/{ref}"))
        assert m["id"] == created["id"] and m["display_name"] == "我的模型" and m["priority"] == 7
        assert m["framework"] == "llama.cpp" and m["status"] == "stopped" and m["health"] == "unknown"
        assert m["config"]["model_path"] == str(gguf) and m["tags"] == ["production", "chat"]
        assert m["resource_requirements"] == {"cpu_cores": 4, "memory": 512}
        assert m["quantization"] == "Q8_0" and m["created_at"].endswith("Z")
    by_alias = await body_of(await client.get("/api/models/default"))  # the default alias names "tiny"
    assert by_alias["name"] == "tiny" and by_alias["status"] == "running" and by_alias["health"] == "healthy"


async def test_create_conflicts_and_validation(client, gguf, tmp_path):
    await create(client, "dup", gguf)
    r = await client.post("/api/models", json={"name": "dup", "config": {"model_path": str(gguf)}})
    assert r.status_code == 409
    assert_error(await body_of(r), "MODEL_ALREADY_EXISTS", "dup")
    cases = [
        ({"name": "x"}, "config.model_path"),
        ({"name": "x", "config": {"model_path": "relative.gguf"}}, "config.model_path"),
        ({"name": "x", "config": {"model_path": str(tmp_path / "missing.gguf")}}, "config.model_path"),
        ({"name": "x", "framework": "tensorrt", "config": {"model_path": str(gguf)}}, "framework"),
        ({"name": "x", "priority": 101, "config": {"model_path": str(gguf)}}, "priority"),
        ({"name": "x", "config": {"model_path": str(gguf), "temperature": 3}}, "config.temperature"),
        ({"name": "model-12", "config": {"model_path": str(gguf)}}, "name"),
        ({"name": "bad name!", "config": {"model_path": str(gguf)}}, "name"),
        ({"name": "v", "framework": "vllm"}, "config.model_path"),
    ]
    for body, field in cases:
        r = await client.post("/api/models", json=body)
        assert r.status_code == 400, (body, await r.get_data(as_text=True))
        err = assert_error(await body_of(r), "INVALID_REQUEST")
        assert field in json.dumps(err), (field, err)


async def test_unknown_model_is_404_everywhere(client):
    for method, url, body in [("GET", "/api/models/model-999", None), ("GET", "/api/models/nope", None),
                              ("PUT", "/api/models/nope", {"priority": 1}), ("DELETE", "/api/models/nope", None),
                              ("POST", "/api/models/nope/start", {}), ("GET", "/api/models/nope/logs", None),
                              ("POST", "/api/models/nope/generate", {"prompt": "x"})]:
        r = await client.open(url, method=method, json=body)
        assert r.status_code == 404, (method, url)
        assert_error(await body_of(r), "MODEL_NOT_FOUND", "nope" if "nope" in url else "model-999")


async def test_list_paging_and_filters(client, gguf):
    for i in range(4):
        await create(client, f"m{i}", gguf)
    await client.post("/api/models", json={"name": "ext", "framework": "vllm",
                                           "config": {"model_name": "org/repo"}})
    first = await body_of(await client.get("/api/models?page=1&size=2"))
    assert first["total"] == 6 and first["size"] == 2 and first["pages"] == 3 and len(first["items"]) == 2
    third = await body_of(await client.get("/api/models?page=3&size=2"))
    names = [m["name"] for m in first["items"] + third["items"]]
    assert len(set(names)) == 4
    for key in ("id", "name", "display_name", "framework", "status", "health", "created_at", "updated_at",
                "config", "resource_usage"):
        assert key in first["items"][0]
    running = await body_of(await client.get("/api/models?status=running"))
    assert [m["name"] for m in running["items"]] == ["tiny"]
    assert running["items"][0]["resource_usage"]["pid"] > 0
    assert running["items"][0]["resource_usage"]["process_memory"] > 0
    vllm = await body_of(await client.get("/api/models?framework=vllm"))
    assert [(m["name"], m["config"]["model_path"]) for m in vllm["items"]] == [("ext", "org/repo")]
    stopped = await body_of(await client.get("/api/models?status=stopped&framework=llama.cpp"))
    assert stopped["total"] == 4
    for query, field in [("size=101", "size"), ("page=0", "page"), ("status=sleeping", "status"),
                         ("framework=onnx", "framework"), ("size=abc", "size")]:
        r = await client.get(f"/api/models?{query}")
        assert r.status_code == 400
        assert_error(await body_of(r), "INVALID_REQUEST", field)


async def test_update_merges_config(client, gguf):
    created = await create(client, "upd", gguf, tags=["a"])
    url = f"/api/models/{created['id']}"
    r = await client.put(url, json={"display_name": "Updated", "priority": 9,
                                    "config": {"temperature": 0.8, "top_p": 0.9}, "tags": ["a", "updated"]})
    assert r.status_code == 200
    m = await body_of(r)
    assert m["display_name"] == "Updated" and m["priority"] == 9 and m["tags"] == ["a", "updated"]
    assert m["config"]["temperature"] == 0.8 and m["config"]["model_path"] == str(gguf)
    m = await body_of(await client.put(url, json={"config": {"temperature": None, "n_ctx": 128}}))
    assert "temperature" not in m["config"] and m["config"]["top_p"] == 0.9 and m["config"]["n_ctx"] == 128
    r = await client.put(url, json={"config": {"top_k": 0}})
    assert r.status_code == 400
    assert_error(await body_of(r), "INVALID_REQUEST", "config.top_k")


# -- delete -------------------------------------------------------------------------------

async def test_delete_running_needs_force(client, fake_core):
    r = await client.delete("/api/models/tiny")
    assert r.status_code == 409
    assert_error(await body_of(r), "CONFLICT", "force")
    assert fake_core.fleet.get("tiny") is not None
    r = await client.delete("/api/models/tiny?force=true")
    assert r.status_code == 200
    body = await body_of(r)
    assert body["name"] == "tiny" and body["file_removed"] is False  # not llmd's file: it stays
    assert fake_core.fleet.get("tiny") is None
    assert (await client.get("/api/models/tiny")).status_code == 404


async def test_delete_removes_only_owned_files(client, fake_core, gguf):
    owned_dir = fake_core.config.models_dir
    owned_dir.mkdir(parents=True, exist_ok=True)
    owned = write_tiny_gguf(owned_dir / "owned.Q4_1.gguf")
    await create(client, "owned", owned)
    await create(client, "users", gguf)
    body = await body_of(await client.delete("/api/models/owned"))
    assert body["file_removed"] is True and not owned.exists()
    body = await body_of(await client.delete("/api/models/users"))
    assert body["file_removed"] is False and gguf.exists()


# -- lifecycle --------------------------------------------------------------------------

async def test_start_stop_restart_tasks(client, fake_core, gguf):
    created = await create(client, "life", gguf)
    mid = created["id"]
    r = await client.post(f"/api/models/{mid}/start", json={"settings": {"n_ctx": 128, "parallel": 2}})
    assert r.status_code == 202
    accepted = await body_of(r)
    assert accepted["task_id"].startswith("task-") and accepted["message"]
    task = await wait_task(client, accepted["task_id"])
    assert task["status"] == "completed", task
    assert task["result"]["status"] == "running" and task["result"]["settings"]["n_ctx"] == 128
    assert fake_core.fleet.get("life").settings.n_slots == 2
    m = await body_of(await client.get(f"/api/models/{mid}"))
    assert m["status"] == "running"

    task = await wait_task(client, (await body_of(await client.post(f"/api/models/{mid}/restart"))) ["task_id"])
    assert task["status"] == "completed" and task["kind"] == "restart"
    assert fake_core.fleet.get("life").settings.n_ctx == 128  # same settings after a restart

    r = await client.post(f"/api/models/{mid}/stop", json={"force": True, "timeout": 30})
    task = await wait_task(client, (await body_of(r))["task_id"])
    assert task["status"] == "completed" and task["result"]["was_running"] is True
    assert (await body_of(await client.get(f"/api/models/{mid}")))["status"] == "stopped"


async def test_more_threads_than_cpus_are_reduced_to_the_cpus(client, fake_core, gguf):
    """1024 threads on a small box would only take turns spinning: the start uses one per logical CPU."""
    mid = (await create(client, "threads", gguf))["id"]
    r = await client.post(f"/api/models/{mid}/start", json={"settings": {"n_threads": 1024}})
    task = await wait_task(client, (await body_of(r))["task_id"])
    assert task["status"] == "completed", task
    assert fake_core.fleet.get("threads").settings.n_threads == (os.cpu_count() or 1)
    assert task["result"]["settings"]["n_threads"] == (os.cpu_count() or 1)


async def test_kv_cache_type_is_a_start_setting(client, fake_core, gguf):
    mid = (await create(client, "kvq", gguf, config={"model_path": str(gguf), "kv_cache_type": "q4_0"}))["id"]
    task = await wait_task(client, (await body_of(await client.post(f"/api/models/{mid}/start")))["task_id"])
    assert task["status"] == "completed", task
    assert fake_core.fleet.get("kvq").settings.kv_cache_type == "q4_0"  # the model's own config
    r = await client.post(f"/api/models/{mid}/start", json={"force": True, "settings": {"kv_cache_type": "q8_0"}})
    task = await wait_task(client, (await body_of(r))["task_id"])
    assert task["result"]["settings"]["kv_cache_type"] == "q8_0"  # a start's settings win
    r = await client.post(f"/api/models/{mid}/start", json={"settings": {"kv_cache_type": "q5_1"}})
    assert r.status_code == 400
    assert "kv_cache_type" in json.dumps(await body_of(r))


async def test_lifecycle_body_is_optional_but_json_must_be_json(client):
    r = await client.post("/api/models/tiny/restart")  # the seed's curl: no body, no content type
    assert r.status_code == 202
    await wait_task(client, (await body_of(r))["task_id"])
    r = await client.post("/api/models/tiny/stop", data=b"", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert_error(await body_of(r), "INVALID_REQUEST", "body")
    r = await client.post("/api/models/tiny/start", json={"timeout": -1})
    assert r.status_code == 400
    assert_error(await body_of(r), "INVALID_REQUEST", "timeout")


async def test_start_timeout_fails_the_task(core_factory, gguf):
    engine = FakeEngine()
    core = await core_factory(engine)
    client = create_app(core).test_client()
    await create(client, "slow", gguf)
    engine.load_gate.clear()  # the load hangs until the gate opens
    r = await client.post("/api/models/slow/start", json={"timeout": 0.2})
    task = await wait_task(client, (await body_of(r))["task_id"])
    assert task["status"] == "failed"
    assert task["error"]["code"] == "OPERATION_TIMEOUT" and "0.2" in task["error"]["message"]
    assert core.fleet.get("slow").state.value == "starting"  # the load goes on
    engine.load_gate.set()


async def test_start_without_room_fails_with_figures(core_factory, tmp_path):
    import gguf as gguf_pkg

    core = await core_factory(**{"deployments.memory_budget_mb": 1, "models.load_default": False})
    client = create_app(core).test_client()
    big = tmp_path / "big.gguf"
    w = gguf_pkg.GGUFWriter(str(big), "llama")
    w.add_context_length(256)
    w.add_tensor("token_embd.weight", np.zeros((1024, 1024), dtype=np.float32))  # 4 MiB
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    await create(client, "big", big)
    task = await wait_task(client, (await body_of(await client.post("/api/models/big/start")))["task_id"])
    assert task["status"] == "failed", task
    assert task["error"]["code"] == "INSUFFICIENT_RESOURCES"
    assert task["error"]["details"]["budget_mb"] == 1 and task["error"]["details"]["needed_mb"] >= 4


async def test_vllm_not_installed_fails_the_task(client, fake_core):
    r = await client.post("/api/models", json={
        "name": "remote", "framework": "vllm",
        "config": {"model_name": "org/repo", "command": "llmd-no-such-vllm serve {model} --port {port}"}})
    assert r.status_code == 201
    task = await wait_task(client, (await body_of(await client.post("/api/models/remote/start")))["task_id"])
    assert task["status"] == "failed"
    assert task["error"]["code"] == "ENGINE_NOT_INSTALLED"
    assert "llmd-no-such-vllm" in task["error"]["message"] and "vLLM is not installed" in task["error"]["message"]
    m = await body_of(await client.get("/api/models/remote"))
    assert m["status"] == "error" and m["health"] == "unhealthy" and "not installed" in m["error"]


async def test_unknown_task_is_404(client):
    r = await client.get("/api/tasks/task-nope")
    assert r.status_code == 404
    assert_error(await body_of(r), "TASK_NOT_FOUND", "task-nope")


# -- inference and logs -------------------------------------------------------------------

async def test_generate_chat_embeddings(client, fake_core):
    r = await client.post("/api/models/tiny/generate",
                          json={"prompt": "Hello", "max_tokens": 50, "stop": ["fake"], "top_k": 40})
    body = await body_of(r)
    assert r.status_code == 200 and body["model"] == "tiny" and body["id"].startswith("gen-")
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["text"] == "Hello from the " and "fake" not in choice["text"]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]

    r = await client.post("/api/models/model-1/generate", json={"prompt": "Hi", "max_tokens": 8, "stream": True})
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = parse_sse(await r.get_data(as_text=True))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(set(c) >= {"id", "choices"} and c["choices"][0]["index"] == 0 for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Hello fr"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["usage"]["completion_tokens"] == 8

    r = await client.post("/api/models/tiny/chat/completions",
                          json={"messages": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Hello!"}], "max_tokens": 100})
    body = await body_of(r)
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello from the fake engine."}
    r = await client.post("/api/models/tiny/chat/completions",
                          json={"messages": [{"role": "user", "content": "Hello!"}], "stream": True})
    events = parse_sse(await r.get_data(as_text=True))
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "Hello from the fake engine." and events[-1] == "[DONE]"

    body = await body_of(await client.post("/api/models/tiny/embeddings",
                                           json={"input": ["Hello world", "How are you?"]}))
    assert [d["index"] for d in body["data"]] == [0, 1] and body["model"] == "tiny"
    assert all(isinstance(x, float) for x in body["data"][0]["embedding"])

    rows = await wait_requests(fake_core, 4)
    assert {r["dialect"] for r in rows} == {"inference_service"}
    stats = (await body_of(await client.get("/api/models/tiny")))["performance_stats"]
    assert stats["total_requests"] >= 4 and stats["error_rate"] == 0.0
    assert stats["avg_response_time"] > 0 and stats["tokens_per_second"] > 0 and stats["requests_per_second"] > 0


async def test_inference_on_a_stopped_model_is_model_not_running(client, fake_core, gguf):
    fake_core.config.deployments.load_on_demand = False  # with it (the default), the request loads the model
    await create(client, "idle", gguf)
    for url, body in [("/api/models/idle/generate", {"prompt": "x"}),
                      ("/api/models/idle/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
                      ("/api/models/idle/embeddings", {"input": "x"})]:
        r = await client.post(url, json=body)
        assert r.status_code == 503
        assert_error(await body_of(r), "MODEL_NOT_RUNNING", "idle")


async def test_inference_on_a_stopped_model_loads_it_on_demand(client, fake_core, gguf):
    await create(client, "idle", gguf)
    r = await client.post("/api/models/idle/generate", json={"prompt": "x"})
    assert r.status_code == 200, await body_of(r)
    assert fake_core.fleet.get("idle").state.value == "running"


async def test_inference_validation(client):
    for url, body, field in [
        ("/api/models/tiny/generate", {"prompt": ""}, "prompt"),
        ("/api/models/tiny/generate", {"prompt": "x", "top_k": 0}, "top_k"),
        ("/api/models/tiny/generate", {"prompt": "x", "temperature": 2.5}, "temperature"),
        ("/api/models/tiny/generate", {"prompt": "x", "stop": ["s"] * 17}, "stop"),
        ("/api/models/tiny/chat/completions", {"messages": []}, "messages"),
        ("/api/models/tiny/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ("/api/models/tiny/embeddings", {"input": 5}, "input"),
    ]:
        r = await client.post(url, json=body)
        assert r.status_code == 400, (url, body)
        assert_error(await body_of(r), "INVALID_REQUEST", field)


async def test_logs(client):
    body = await body_of(await client.get("/api/models/tiny/logs?lines=50"))
    messages = [e["message"] for e in body["logs"]]
    assert "state running" in messages and any("fake load" in m for m in messages)
    assert all(set(e) == {"timestamp", "level", "message"} and e["level"] == e["level"].upper()
               for e in body["logs"])
    two = await body_of(await client.get("/api/models/tiny/logs?lines=2"))
    assert [e["message"] for e in two["logs"]] == messages[-2:]
    for query in ("lines=0", "lines=x", "follow=maybe"):
        r = await client.get(f"/api/models/tiny/logs?{query}")
        assert r.status_code == 400
        assert_error(await body_of(r), "INVALID_REQUEST")
