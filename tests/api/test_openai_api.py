"""The OpenAI dialect on a FakeEngine: models, chat and text completions, streaming, embeddings."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from helpers import parse_sse, wait_requests

from llmd.core.engine.fake import FakeEngine
from llmd.http import create_app

REPLY = "Hello from the fake engine."
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def client(fake_core):
    return create_app(fake_core).test_client()


async def json_of(r):
    return json.loads(await r.get_data(as_text=True))


def assert_openai_error(body, status_code=None, code=None, param=None):
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err


async def sse_events(r) -> list[str]:
    assert r.status_code == 200, await r.get_data(as_text=True)
    assert r.headers["Content-Type"].startswith("text/event-stream")
    return parse_sse(await r.get_data(as_text=True))


# -- models --------------------------------------------------------------------

async def test_list_models(client):
    r = await client.get("/v1/models")
    assert r.status_code == 200
    body = await json_of(r)
    assert body["object"] == "list"
    [m] = body["data"]
    assert m["id"] == "tiny"
    assert m["object"] == "model"
    assert m["owned_by"] == "llmd"
    assert isinstance(m["created"], int) and m["created"] > 0
    # core.start() points the "default" alias at the configured default model
    assert "default" in m["aliases"]
    assert m["state"] == "running"


async def test_retrieve_model_by_name_and_alias(client):
    for name in ("tiny", "default"):
        r = await client.get(f"/v1/models/{name}")
        assert r.status_code == 200
        body = await json_of(r)
        assert body["id"] == "tiny" and body["object"] == "model"


async def test_retrieve_unknown_model(client):
    r = await client.get("/v1/models/no-such-model")
    assert r.status_code == 404
    err = assert_openai_error(await json_of(r), code="model_not_found", param="model")
    assert "no-such-model" in err["message"]


async def test_model_ids_with_slashes_are_routed(client):
    r = await client.get("/v1/models/org/some-model")
    assert r.status_code == 404
    assert "org/some-model" in assert_openai_error(await json_of(r), code="model_not_found")["message"]


async def test_default_alias_only_for_the_default_model(core_factory):
    core = await core_factory(**{"models.default": "other"})  # "tiny" is not the default
    c = create_app(core).test_client()
    body = await json_of(await c.get("/v1/models"))
    assert body["data"][0]["aliases"] == []
    assert body["data"][0]["state"] == "stopped"
    r = await c.get("/v1/models/default")
    assert r.status_code == 404


# -- chat completions ------------------------------------------------------------

async def test_chat_completion(client, fake_core):
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = await json_of(r)
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "tiny"
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": REPLY}
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == len(REPLY)
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    rows = await wait_requests(fake_core, 1)
    assert (rows[0]["dialect"], rows[0]["endpoint"], rows[0]["status"]) == ("openai", "/v1/chat/completions", "ok")


async def test_chat_completion_by_alias_and_content_parts(client):
    body = {"model": "default", "messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
    ]}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert (await json_of(r))["choices"][0]["message"]["content"] == REPLY


async def test_image_content_parts_are_refused(client):
    body = {"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    assert assert_openai_error(await json_of(r))["param"] == "messages[0].content[0].type"


async def test_chat_stream(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = await sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "tiny" for c in chunks)
    first, *content, last = chunks
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert first["choices"][0]["finish_reason"] is None
    assert content and all(c["choices"][0]["finish_reason"] is None for c in content)
    assert "".join(c["choices"][0]["delta"]["content"] for c in content) == REPLY
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["choices"][0]["delta"] == {}
    assert "usage" not in last


async def test_chat_stream_include_usage(client):
    r = await client.post("/v1/chat/completions",
                          json={**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    events = await sse_events(r)
    assert events[-1] == "[DONE]"
    usage_chunk = json.loads(events[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == len(REPLY)
    assert usage_chunk["usage"]["total_tokens"] == (
        usage_chunk["usage"]["prompt_tokens"] + usage_chunk["usage"]["completion_tokens"])
    finish = json.loads(events[-3])
    assert finish["choices"][0]["finish_reason"] == "stop"


async def test_max_tokens_gives_length(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 5})
    body = await json_of(r)
    assert body["choices"][0]["message"]["content"] == "Hello"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    # max_completion_tokens wins over max_tokens
    r = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 5, "max_completion_tokens": 2})
    assert (await json_of(r))["choices"][0]["message"]["content"] == "He"


async def test_max_tokens_in_stream(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 3, "stream": True})
    chunks = [json.loads(e) for e in (await sse_events(r))[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hel"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("stop,expected", [("fake", "Hello from the "), (["zzz", " from"], "Hello")])
async def test_stop(client, stop, expected):
    r = await client.post("/v1/chat/completions", json={**CHAT, "stop": stop})
    body = await json_of(r)
    assert body["choices"][0]["message"]["content"] == expected
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_too_many_stop_strings(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "stop": [f"s{i}" for i in range(17)]})
    assert r.status_code == 400
    assert_openai_error(await json_of(r), param="stop")


async def test_n_beyond_the_slots_is_refused(client):
    # the fake core's deployment has engine.parallel (4) slots: n=5 cannot run at once
    r = await client.post("/v1/chat/completions", json={**CHAT, "n": 5})
    assert r.status_code == 400
    err = assert_openai_error(await json_of(r), code="invalid_request", param="n")
    assert err["type"] == "invalid_request_error"
    assert "n" in err["message"]
    for n in (1, 2):
        r = await client.post("/v1/chat/completions", json={**CHAT, "n": n})
        assert r.status_code == 200
        assert len((await json_of(r))["choices"]) == n


@pytest.mark.parametrize("extra,param", [
    ({"tools": [{"type": "function", "function": {"name": "f f"}}]}, "tools[0].function.name"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object",
      "properties": {"a": {"$ref": "#/nowhere"}}}}}}, "response_format.json_schema.schema"),
    ({"grammar": "no rules here"}, "grammar"),
    ({"temperature": 3}, "temperature"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
])
async def test_chat_refusals_name_the_param(client, extra, param):
    r = await client.post("/v1/chat/completions", json={**CHAT, **extra})
    assert r.status_code == 400
    assert_openai_error(await json_of(r), param=param)


async def test_response_format_json_object_is_accepted(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "response_format": {"type": "json_object"}})
    assert r.status_code == 200


async def test_context_overflow(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 4000})
    assert r.status_code == 400
    err = assert_openai_error(await json_of(r), code="context_length_exceeded", param="max_tokens")
    assert "4000" in err["message"] and "256" in err["message"]


async def test_unknown_model_chat(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4"})
    assert r.status_code == 404
    err = assert_openai_error(await json_of(r), code="model_not_found", param="model")
    assert "gpt-4" in err["message"]
    assert err["type"] == "invalid_request_error"


async def test_engine_failure_non_stream_is_500_in_envelope(core_factory):
    core = await core_factory(FakeEngine(fail_after=2))
    c = create_app(core).test_client()
    r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 500
    text = await r.get_data(as_text=True)
    assert "Traceback" not in text
    err = assert_openai_error(json.loads(text), code="engine_error")
    assert err["type"] == "server_error"


async def test_engine_failure_mid_stream_ends_with_error_event(core_factory):
    core = await core_factory(FakeEngine(fail_after=2))
    c = create_app(core).test_client()
    r = await c.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = await sse_events(r)
    assert events[-1] == "[DONE]"
    assert_openai_error(json.loads(events[-2]), code="engine_error")
    content = [json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-2]]
    assert "".join(content) == "He"


async def test_model_not_loaded_is_503_with_retry_after(core_factory):
    core = await core_factory(FakeEngine(fail_load=True))
    c = create_app(core).test_client()
    r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503
    assert "Retry-After" in r.headers
    assert_openai_error(await json_of(r), code="model_not_loaded")


async def test_busy_is_503_with_retry_after(core_factory):
    import asyncio

    from llmd.core.types import GenerateRequest, SamplingParams

    core = await core_factory(FakeEngine(delay_s=0.01), **{"engine.queue_size": 0, "engine.parallel": 1})
    running = await core.inference.generate(
        GenerateRequest(prompt="x", params=SamplingParams(ignore_eos=True, max_tokens=200)))
    it = running.__aiter__()
    await asyncio.wait_for(it.__anext__(), 5)
    c = create_app(core).test_client()
    r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) >= 1
    assert_openai_error(await json_of(r), code="server_busy")
    await it.aclose()


# -- completions -----------------------------------------------------------------

async def test_completion(client):
    r = await client.post("/v1/completions", json={"model": "tiny", "prompt": "Once upon a time"})
    assert r.status_code == 200
    body = await json_of(r)
    assert body["id"].startswith("cmpl-")
    assert body["object"] == "text_completion"
    assert body["model"] == "tiny"
    [choice] = body["choices"]
    assert choice["text"] == REPLY
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == len("Once upon a time") // 4
    assert body["usage"]["completion_tokens"] == len(REPLY)


async def test_completion_prompt_list(client):
    r = await client.post("/v1/completions", json={"model": "tiny", "prompt": ["one prompt"], "max_tokens": 4})
    body = await json_of(r)
    assert body["choices"][0]["text"] == "Hell"
    assert body["choices"][0]["finish_reason"] == "length"
    r = await client.post("/v1/completions", json={"model": "tiny", "prompt": ["a", "b"]})
    assert r.status_code == 400
    assert_openai_error(await json_of(r), param="prompt")


async def test_completion_stream(client):
    r = await client.post("/v1/completions", json={"model": "tiny", "prompt": "x", "stream": True,
                                                   "stream_options": {"include_usage": True}})
    events = await sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    usage = chunks.pop()
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(REPLY)
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == REPLY
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


async def test_unicode_stream_is_whole_characters(core_factory):
    reply = "Привет, 世界! Ёлка."
    core = await core_factory(FakeEngine(reply=reply, split_bytes=True))
    c = create_app(core).test_client()
    r = await c.post("/v1/completions", json={"model": "tiny", "prompt": "x", "stream": True})
    raw = await r.get_data()
    raw.decode("utf-8")  # strict: the body is valid UTF-8
    chunks = [json.loads(e) for e in parse_sse(raw.decode())[:-1]]
    texts = [ch["choices"][0]["text"] for ch in chunks]
    assert all("\ufffd" not in t for t in texts)
    assert "".join(texts) == reply
    # non-ASCII goes out as itself, not as \\u escapes
    r = await c.post("/v1/completions", json={"model": "tiny", "prompt": "x"})
    assert "Привет" in await r.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_stream_chunks_carry_any_text_exactly(core_factory, path):
    """The token events are encoded from a template around the text: quotes, backslashes, newlines,
    control characters and non-ASCII text must come out as JSON that decodes to the same text."""
    reply = 'He said "hi"\\ there\n\ttab \x01\x1f é ✓ \u2028 {"x": 1} \u0001text\u0001'
    core = await core_factory(FakeEngine(reply=reply))
    c = create_app(core).test_client()
    body = {"model": "tiny", "stream": True, "stream_options": {"include_usage": True}}
    body.update({"messages": [{"role": "user", "content": "x"}]} if "chat" in path else {"prompt": "x"})
    r = await c.post(path, json=body)
    events = parse_sse((await r.get_data()).decode("utf-8"))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    texts = [(ch["choices"][0].get("delta", {}).get("content") if "chat" in path else ch["choices"][0]["text"])
             for ch in chunks if ch["choices"]]
    assert "".join(t or "" for t in texts) == reply
    first = chunks[1] if "chat" in path else chunks[0]  # the chat's first chunk carries only the role
    expected_keys = {"id", "object", "created", "model", "choices"}
    assert expected_keys <= set(first) and first["choices"][0]["finish_reason"] is None
    assert chunks[-1]["usage"]["completion_tokens"] > 0 and chunks[-1]["choices"] == []


# -- embeddings ------------------------------------------------------------------

async def test_embeddings_string(client):
    r = await client.post("/v1/embeddings", json={"model": "tiny", "input": "hello"})
    assert r.status_code == 200
    body = await json_of(r)
    assert body["object"] == "list"
    assert body["model"] == "tiny"
    [item] = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    vec = item["embedding"]
    assert len(vec) == 3 and all(isinstance(x, float) for x in vec)
    assert abs(sum(x * x for x in vec) - 1) < 1e-6
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] >= 1


async def test_embeddings_list_and_base64(client):
    inputs = ["hello", "мир", "third input"]
    r = await client.post("/v1/embeddings", json={"model": "tiny", "input": inputs})
    floats = [d["embedding"] for d in (await json_of(r))["data"]]
    assert [d["index"] for d in (await json_of(r))["data"]] == [0, 1, 2]
    assert len(floats) == 3 and floats[0] != floats[1]
    r = await client.post("/v1/embeddings", json={"model": "tiny", "input": inputs, "encoding_format": "base64"})
    assert r.status_code == 200
    data = (await json_of(r))["data"]
    for d, expected in zip(data, floats, strict=True):
        assert isinstance(d["embedding"], str)
        raw = base64.b64decode(d["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert decoded == pytest.approx(expected, abs=1e-6)


async def test_embeddings_dimensions(client):
    r = await client.post("/v1/embeddings", json={"model": "tiny", "input": "hello", "dimensions": 2})
    vec = (await json_of(r))["data"][0]["embedding"]
    assert len(vec) == 2 and abs(sum(x * x for x in vec) - 1) < 1e-6
    r = await client.post("/v1/embeddings", json={"model": "tiny", "input": "hello", "dimensions": 99})
    assert r.status_code == 400
    assert_openai_error(await json_of(r), param="dimensions")


@pytest.mark.parametrize("body,param", [
    ({"model": "tiny", "input": []}, "input"),
    ({"model": "tiny", "input": "x", "encoding_format": "hex"}, "encoding_format"),
    ({"model": "tiny", "input": [1, 2]}, "input"),
])
async def test_embeddings_bad_input(client, body, param):
    r = await client.post("/v1/embeddings", json=body)
    assert r.status_code == 400
    assert_openai_error(await json_of(r), param=param)


async def test_embeddings_unknown_model(client):
    r = await client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert r.status_code == 404
    assert_openai_error(await json_of(r), code="model_not_found")


# -- the envelope ------------------------------------------------------------------

async def test_error_envelope_on_bad_json(client):
    r = await client.post("/v1/chat/completions", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    err = assert_openai_error(await json_of(r), code="invalid_json", param="body")
    assert err["type"] == "invalid_request_error"


async def test_unknown_v1_path(client):
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404
    err = assert_openai_error(await json_of(r), code="not_found")
    assert err["type"] == "invalid_request_error"
