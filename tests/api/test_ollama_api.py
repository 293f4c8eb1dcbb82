"""The Ollama API on the FakeEngine: shapes of every route, NDJSON streams, tools, keep_alive, load on demand,
blobs and create, copy and delete, and every 400/404 naming its field in Ollama's {"error": "..."}."""

from __future__ import annotations

import hashlib
import json

import pytest

from llmd.core.engine.fake import FakeEngine
from llmd.http import create_app
from llmd.http.ollama.translate import keep_alive_seconds

REPLY = "Hello from the fake engine."
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "Say hi"}]
TIMINGS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
           "eval_duration")


@pytest.fixture
def client(fake_core):
    return create_app(fake_core).test_client()


async def json_of(r) -> dict:
    return json.loads(await r.get_data(as_text=True))


async def lines_of(r) -> list[dict]:
    text = await r.get_data(as_text=True)
    return [json.loads(x) for x in text.splitlines() if x.strip()]


async def error_of(r, status: int, *names: str) -> str:
    assert r.status_code == status, await r.get_data(as_text=True)
    body = await json_of(r)
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    for name in names:
        assert name in body["error"], body
    return body["error"]


# -- probes and listings -----------------------------------------------------------

async def test_root_answers_ollama_is_running_but_not_to_a_browser(client):
    r = await client.get("/")
    assert r.status_code == 200 and await r.get_data(as_text=True) == "Ollama is running"
    assert (await client.head("/")).status_code == 200
    r = await client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code in (302, 404)  # to the web console where there is one; never the Ollama text
    assert "Ollama is running" not in await r.get_data(as_text=True)


async def test_version(client):
    body = await json_of(await client.get("/api/version"))
    assert body["version"].count(".") == 2 and body["llmd"]


async def test_tags_lists_models_with_a_tag_and_copies(client):
    body = await json_of(await client.get("/api/tags"))
    (m,) = body["models"]
    assert m["name"] == m["model"] == "tiny:latest"
    assert m["size"] > 0 and len(m["digest"]) == 64 and m["modified_at"].endswith("Z")
    assert m["details"] == {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                            "parameter_size": "", "quantization_level": "Q4_1"}
    assert (await client.post("/api/copy", json={"source": "tiny", "destination": "my-copy"})).status_code == 200
    names = {x["name"] for x in (await json_of(await client.get("/api/tags")))["models"]}
    assert names == {"tiny:latest", "my-copy:latest"}


async def test_ps_shows_the_loaded_model(client, fake_core):
    (m,) = (await json_of(await client.get("/api/ps")))["models"]
    assert m["name"] == "tiny:latest" and m["size"] > 0 and m["context_length"] > 0
    assert m["expires_at"].startswith("2318")  # the default model is pinned: never unloaded
    await fake_core.fleet.unload("tiny")
    assert (await json_of(await client.get("/api/ps")))["models"] == []


async def test_show(client):
    body = await json_of(await client.post("/api/show", json={"model": "tiny:latest"}))
    assert body["details"]["family"] == "llama" and body["details"]["quantization_level"] == "Q4_1"
    assert body["model_info"]["general.architecture"] == "llama"
    assert body["model_info"]["llama.context_length"] == 256
    assert "{% for m in messages %}" in body["template"]
    assert set(body["capabilities"]) == {"completion", "tools", "embedding"}
    assert "temperature" in body["parameters"] and body["modelfile"].startswith("# Modelfile")
    # the older spelling, "name"
    assert (await client.post("/api/show", json={"name": "tiny"})).status_code == 200


# -- chat and generate ----------------------------------------------------------------

async def test_chat_streams_ndjson_with_a_final_done_line(client):
    r = await client.post("/api/chat", json={"model": "tiny", "messages": ASK})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-ndjson")
    lines = await lines_of(r)
    *pieces, last = lines
    assert all(x["done"] is False and x["message"]["role"] == "assistant" for x in pieces)
    assert "".join(x["message"]["content"] for x in pieces) == REPLY
    assert last["done"] is True and last["done_reason"] == "stop" and last["model"] == "tiny"
    assert last["message"] == {"role": "assistant", "content": ""}
    assert all(isinstance(last[k], int) for k in TIMINGS)
    assert last["eval_count"] == len(REPLY) and last["total_duration"] >= last["eval_duration"]


async def test_chat_without_streaming(client):
    body = await json_of(await client.post("/api/chat", json={
        "model": "tiny:latest", "messages": ASK, "stream": False,
        "options": {"num_predict": 5, "temperature": 0, "top_k": 1, "seed": 3, "stop": ["zzz"], "num_ctx": 256,
                    "mirostat": 0}}))
    assert body["message"] == {"role": "assistant", "content": REPLY[:5]}
    assert body["done"] is True and body["done_reason"] == "length" and body["eval_count"] == 5
    assert body["model"] == "tiny:latest" and body["created_at"].endswith("Z")


async def test_generate_stream_and_not(client):
    lines = await lines_of(await client.post("/api/generate", json={"model": "tiny", "prompt": "hi"}))
    assert "".join(x["response"] for x in lines[:-1]) == REPLY
    assert lines[-1]["done"] is True and lines[-1]["response"] == "" and "prompt_eval_count" in lines[-1]
    body = await json_of(await client.post("/api/generate", json={
        "model": "tiny", "prompt": "hi", "system": "Be brief.", "stream": False}))
    assert body["response"] == REPLY and body["done_reason"] == "stop"
    raw = await json_of(await client.post("/api/generate", json={"model": "tiny", "prompt": "hi", "raw": True,
                                                                  "stream": False}))
    assert raw["response"] == REPLY


async def test_format_json_and_a_schema_are_grammars(client, fake_core):
    seen = []
    dep = fake_core.fleet.get("tiny")
    submit = dep.submit

    def spy(prompt, params, **kw):
        seen.append(params.grammar)
        return submit(prompt, params, **kw)

    dep.submit = spy
    for fmt in ("json", {"type": "object", "properties": {"a": {"type": "integer"}}}):
        r = await client.post("/api/chat", json={"model": "tiny", "messages": ASK, "format": fmt, "stream": False})
        assert r.status_code == 200
    assert len(seen) == 2 and all(g and "root" in g for g in seen)


async def test_empty_messages_or_prompt_load_and_keep_alive_zero_unloads(client, fake_core):
    body = await json_of(await client.post("/api/generate", json={"model": "tiny"}))
    assert body["done"] is True and body["done_reason"] == "load" and body["response"] == ""
    body = await json_of(await client.post("/api/chat", json={"model": "tiny", "messages": [], "keep_alive": 0}))
    assert body["done_reason"] == "unload" and body["message"]["content"] == ""
    assert fake_core.fleet.get("tiny") is None
    body = await json_of(await client.post("/api/chat", json={"model": "tiny", "keep_alive": "10m"}))
    assert body["done_reason"] == "load"
    dep = fake_core.fleet.get("tiny")
    assert dep.state.value == "running" and dep.keep_alive_s == 600


async def test_a_request_loads_an_unloaded_model_and_reports_the_load(client, fake_core):
    await fake_core.fleet.unload("tiny")
    body = await json_of(await client.post("/api/chat", json={"model": "tiny", "messages": ASK, "stream": False}))
    assert body["message"]["content"] == REPLY and body["load_duration"] > 0
    assert body["total_duration"] >= body["load_duration"]


async def test_keep_alive_durations():
    assert keep_alive_seconds("5m") == 300 and keep_alive_seconds("1h30m") == 5400
    assert keep_alive_seconds("300ms") == pytest.approx(0.3) and keep_alive_seconds("-1") == -1
    assert keep_alive_seconds("0") == 0 and keep_alive_seconds(30) == 30 and keep_alive_seconds(None) is None
    assert keep_alive_seconds("-1m") == -60 and keep_alive_seconds("2.5s") == 2.5


async def test_tools_come_back_as_a_message_with_object_arguments(core_factory):
    core = await core_factory(FakeEngine(reply="Let me check. " + CALL))
    client = create_app(core).test_client()
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    body = await json_of(await client.post("/api/chat", json={"model": "tiny", "messages": ask, "tools": [WEATHER],
                                                              "stream": False}))
    (call,) = body["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and call["function"]["arguments"] == {"city": "Paris"}
    assert body["done_reason"] == "stop"
    lines = await lines_of(await client.post("/api/chat", json={"model": "tiny", "messages": ask,
                                                                "tools": [WEATHER]}))
    with_calls = [x for x in lines if x["message"].get("tool_calls")]
    assert len(with_calls) == 1 and with_calls[0]["done"] is False
    assert with_calls[0]["message"]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert lines[-1]["done"] is True
    # the call and its result in the history: a tool message answers the call by the tool's name
    history = ask + [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": '{"sky": "clear"}', "tool_name": "get_weather"}]
    r = await client.post("/api/chat", json={"model": "tiny", "messages": history, "tools": [WEATHER],
                                             "stream": False})
    assert r.status_code == 200


# -- embeddings -------------------------------------------------------------------------

async def test_embed_and_embeddings(client):
    body = await json_of(await client.post("/api/embed", json={"model": "tiny", "input": ["a", "bb"]}))
    assert body["model"] == "tiny" and len(body["embeddings"]) == 2 and body["prompt_eval_count"] > 0
    body = await json_of(await client.post("/api/embed", json={"model": "tiny", "input": "a", "dimensions": 2}))
    assert len(body["embeddings"][0]) == 2
    body = await json_of(await client.post("/api/embeddings", json={"model": "tiny", "prompt": "a"}))
    assert len(body["embedding"]) > 2
    assert await json_of(await client.post("/api/embeddings", json={"model": "tiny", "prompt": ""})) == \
        {"embedding": []}


# -- copy, delete, blobs, create -----------------------------------------------------------

async def test_copy_then_delete_the_copy_keeps_the_model(client, fake_core):
    assert (await client.post("/api/copy", json={"source": "tiny", "destination": "alias:v1"})).status_code == 200
    r = await client.post("/api/chat", json={"model": "alias:v1", "messages": ASK, "stream": False})
    assert (await json_of(r))["message"]["content"] == REPLY
    assert (await client.delete("/api/delete", json={"model": "alias:v1"})).status_code == 200
    assert await fake_core.registry.find("alias:v1") is None and await fake_core.registry.find("tiny") is not None
    await error_of(await client.delete("/api/delete", json={"model": "alias:v1"}), 404, "model 'alias:v1' not found")


async def test_delete_removes_a_model_even_when_loaded(client, fake_core):
    assert (await client.delete("/api/delete", json={"model": "tiny:latest"})).status_code == 200
    assert await fake_core.registry.find("tiny") is None and fake_core.fleet.get("tiny") is None


async def test_blobs_and_create_from_a_gguf_blob(client, fake_core, tiny_gguf):
    data = tiny_gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (await client.head(f"/api/blobs/{digest}")).status_code == 404
    r = await client.post(f"/api/blobs/{digest}", data=data)
    assert r.status_code == 201
    assert (await client.head(f"/api/blobs/{digest}")).status_code == 200
    assert (fake_core.config.models_dir / "blobs" / f"sha256-{digest[7:]}").read_bytes() == data
    r = await client.post("/api/create", json={"model": "made", "files": {"tiny.gguf": digest},
                                               "system": "You are terse.",
                                               "parameters": {"temperature": 0.2, "num_predict": 7,
                                                              "stop": ["END"], "mirostat": 0}})
    lines = await lines_of(r)
    assert lines[-1] == {"status": "success"}
    model = await fake_core.registry.find("made")
    assert model.config == {"temperature": 0.2, "max_tokens": 7, "stop": ["END"], "system": "You are terse."}
    body = await json_of(await client.post("/api/chat", json={"model": "made", "messages": ASK, "stream": False}))
    assert body["message"]["content"] == REPLY[:7]
    show = await json_of(await client.post("/api/show", json={"model": "made"}))
    assert show["system"] == "You are terse." and "num_predict" in show["parameters"]
    # from an existing model, not streamed
    r = await client.post("/api/create", json={"model": "made2", "from": "made", "stream": False})
    assert await json_of(r) == {"status": "success"}
    await error_of(await client.post("/api/create", json={"model": "made", "from": "tiny"}), 409, "made")


async def test_a_blob_whose_bytes_do_not_match_is_refused(client, fake_core):
    digest = "sha256:" + "0" * 64
    await error_of(await client.post(f"/api/blobs/{digest}", data=b"not these bytes"), 400, "digest")
    assert (await client.head(f"/api/blobs/{digest}")).status_code == 404
    await error_of(await client.post("/api/blobs/sha256:xyz", data=b"x"), 400, "digest")


# -- errors name the field --------------------------------------------------------------

@pytest.mark.parametrize("path,body,status,field", [
    ("/api/chat", {"model": "nope", "messages": ASK}, 404, "model 'nope' not found"),
    ("/api/generate", {"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
    ("/api/embed", {"model": "nope", "input": "x"}, 404, "model 'nope' not found"),
    ("/api/embeddings", {"model": "nope", "prompt": ""}, 404, "model 'nope' not found"),
    ("/api/show", {"model": "nope"}, 404, "model 'nope' not found"),
    ("/api/delete", {"model": "nope"}, 404, "model 'nope' not found"),
    ("/api/copy", {"source": "nope", "destination": "x"}, 404, "model 'nope' not found"),
    ("/api/create", {"model": "x", "from": "nope"}, 404, "model 'nope' not found"),
    ("/api/chat", {"messages": ASK}, 400, "model"),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, 400,
     "messages[0].images"),
    ("/api/chat", {"model": "tiny", "messages": ASK, "think": True}, 400, "think"),
    ("/api/chat", {"model": "tiny", "messages": ASK, "options": {"temperature": 3}}, 400, "options.temperature"),
    ("/api/chat", {"model": "tiny", "messages": ASK, "options": {"num_predict": 0}}, 400, "options.num_predict"),
    ("/api/chat", {"model": "tiny", "messages": ASK, "options": {"top_p": "x"}}, 400, "options.top_p"),
    ("/api/chat", {"model": "tiny", "messages": ASK, "options": {"stop": ["s"] * 17}}, 400, "options.stop"),
    ("/api/chat", {"model": "tiny", "messages": ASK, "format": "yaml"}, 400, "format"),
    ("/api/chat", {"model": "tiny", "messages": ASK, "keep_alive": "5 minutes"}, 400, "keep_alive"),
    ("/api/chat", {"model": "tiny", "messages": ASK, "tools": [{"type": "nope"}]}, 400, "tools[0].type"),
    ("/api/chat", {"model": "tiny", "messages": [
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}]},
     400, "messages[0].tool_calls[0].function.arguments"),
    ("/api/generate", {"model": "tiny", "prompt": "x", "images": ["aGk="]}, 400, "images"),
    ("/api/generate", {"model": "tiny", "prompt": "x", "suffix": "y"}, 400, "suffix"),
    ("/api/generate", {"model": "tiny", "prompt": "x", "template": "{{ .Prompt }}"}, 400, "template"),
    ("/api/generate", {"model": "tiny", "prompt": "x", "context": [1, 2]}, 400, "context"),
    ("/api/generate", {"model": "tiny", "prompt": "x", "think": "high"}, 400, "think"),
    ("/api/embed", {"model": "tiny"}, 400, "input"),
    ("/api/embed", {"model": "tiny", "input": []}, 400, "input"),
    ("/api/embed", {"model": "tiny", "input": "x", "dimensions": 0}, 400, "dimensions"),
    ("/api/show", {}, 400, "model"),
    ("/api/copy", {"source": "tiny"}, 400, "destination"),
    ("/api/copy", {"source": "tiny", "destination": "bad name!"}, 400, "destination"),
    ("/api/copy", {"source": "tiny", "destination": "tiny"}, 200, ""),
    ("/api/pull", {}, 400, "model"),
    ("/api/pull", {"model": "hf.co/only-owner"}, 400, "model"),
    ("/api/create", {"model": "x"}, 400, "files"),
    ("/api/create", {"model": "x", "files": {"m.gguf": "sha256:" + "1" * 64}}, 400, "files.m.gguf"),
    ("/api/create", {"model": "x", "files": {"m.gguf": "md5:1"}}, 400, "files.m.gguf"),
    ("/api/create", {"model": "x", "from": "tiny", "quantize": "q4_K_M"}, 400, "quantize"),
    ("/api/create", {"model": "x", "from": "tiny", "adapters": {"a": "sha256:" + "1" * 64}}, 400, "adapters"),
    ("/api/create", {"model": "x", "from": "tiny", "parameters": {"temperature": "hot"}}, 400,
     "parameters.temperature"),
    ("/api/create", {"model": "x", "from": "tiny", "parameters": {"num_ctx": 2}}, 400, "parameters.num_ctx"),
    ("/api/create", {"from": "tiny"}, 400, "model"),
    ("/api/push", {"model": "tiny"}, 400, "model"),
])
async def test_errors_name_the_field(client, path, body, status, field):
    method = client.delete if path == "/api/delete" else client.post
    r = await method(path, json=body)
    if status == 200:
        assert r.status_code == 200
        return
    await error_of(r, status, field)


async def test_model_not_loaded_when_on_demand_is_off_is_503(core_factory):
    core = await core_factory(**{"models.load_default": False, "deployments.load_on_demand": False})
    r = await create_app(core).test_client().post("/api/chat", json={"model": "tiny", "messages": ASK})
    await error_of(r, 503, "not loaded")
    assert r.headers["Retry-After"]


async def test_an_error_after_the_stream_began_is_the_last_line(core_factory):
    core = await core_factory(FakeEngine(fail_after=2))
    lines = await lines_of(await create_app(core).test_client().post("/api/chat", json={"model": "tiny",
                                                                                         "messages": ASK}))
    assert "".join(x["message"]["content"] for x in lines[:-1]) == "He"
    assert set(lines[-1]) == {"error"}


async def test_deleting_one_of_two_models_on_one_blob_keeps_the_file(client, fake_core, tiny_gguf):
    data = tiny_gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (await client.post(f"/api/blobs/{digest}", data=data)).status_code == 201
    for name in ("one", "two"):
        r = await client.post("/api/create", json={"model": name, "files": {"m.gguf": digest}, "stream": False})
        assert r.status_code == 200
    blob = fake_core.config.models_dir / "blobs" / f"sha256-{digest[7:]}"
    assert (await client.delete("/api/delete", json={"model": "one"})).status_code == 200
    assert blob.exists()  # "two" still uses it
    assert (await client.delete("/api/delete", json={"model": "two"})).status_code == 200
    assert not blob.exists()  # the last user of an uploaded blob takes it along
