"""The Anthropic Messages API on a FakeEngine: shapes, streaming events, tools, errors in its envelope, auth."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from helpers import wait_requests

from llmd.core.engine.fake import FakeEngine
from llmd.core.types import ChatMessage, GenerateRequest, SamplingParams, ToolCall
from llmd.http import create_app
from llmd.http.anthropic import translate
from llmd.http.anthropic.schemas import MessagesRequest

REPLY = "Hello from the fake engine."
ASK = {"model": "tiny", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
LAN = {"client": ("192.0.2.10", 40000)}  # not loopback
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def client(fake_core):
    return create_app(fake_core).test_client()


async def json_of(r) -> Any:
    return json.loads(await r.get_data(as_text=True))


def assert_error(body: Any, kind: str, field: str | None = None) -> str:
    """Anthropic's envelope, exactly; returns the message (which names ``field``)."""
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == kind, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    if field is not None:
        assert field in message, (field, message)
    return message


def named_events(text: str) -> list[tuple[str, dict]]:
    """(event name, data) of each event of an Anthropic stream; its data's type must be its name."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: "), block
        assert len(lines) == 2 and lines[1].startswith("data: "), block
        name, data = lines[0][7:], json.loads(lines[1][6:])
        assert data["type"] == name, block
        out.append((name, data))
    return out


async def stream_of(client, body: dict, **kw: Any) -> list[tuple[str, dict]]:
    r = await client.post("/v1/messages", json={**body, "stream": True}, **kw)
    assert r.status_code == 200, await r.get_data(as_text=True)
    assert r.headers["Content-Type"].startswith("text/event-stream")
    return named_events(await r.get_data(as_text=True))


# -- messages ----------------------------------------------------------------------

async def test_message_shape(client):
    r = await client.post("/v1/messages", json=ASK, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200
    body = await json_of(r)
    assert set(body) == {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    assert body["id"].startswith("msg_") and len(body["id"]) == 28
    assert body["type"] == "message" and body["role"] == "assistant" and body["model"] == "tiny"
    assert body["content"] == [{"type": "text", "text": REPLY}]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    usage = body["usage"]
    assert set(usage) == {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] > 0
    assert usage["output_tokens"] == len(REPLY)  # the fake's tokens are characters


async def test_the_default_alias_and_system_prompt(client):
    for system in ("Be brief.", [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]):
        r = await client.post("/v1/messages", json={**ASK, "model": "default", "system": system,
                                                     "metadata": {"user_id": "u-1"}, "service_tier": "auto",
                                                     "thinking": {"type": "disabled"}, "temperature": 1,
                                                     "top_p": 0.9, "top_k": 40})
        assert r.status_code == 200, await r.get_data(as_text=True)
        assert (await json_of(r))["model"] == "tiny"


async def test_stop_sequence_is_named(client):
    r = await client.post("/v1/messages", json={**ASK, "stop_sequences": ["zzz", "fake"]})
    body = await json_of(r)
    assert body["content"] == [{"type": "text", "text": "Hello from the "}]
    assert body["stop_reason"] == "stop_sequence" and body["stop_sequence"] == "fake"
    events = await stream_of(client, {**ASK, "stop_sequences": ["fake"]})
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "fake"}


async def test_max_tokens_is_the_stop_reason(client):
    r = await client.post("/v1/messages", json={**ASK, "max_tokens": 3})
    body = await json_of(r)
    assert body["stop_reason"] == "max_tokens" and body["content"][0]["text"] == "Hel"
    assert body["usage"]["output_tokens"] == 3


async def test_request_log_names_the_dialect(fake_core, client):
    assert (await client.post("/v1/messages", json=ASK)).status_code == 200
    rows = await wait_requests(fake_core, 1)
    assert rows[0]["dialect"] == "anthropic" and rows[0]["endpoint"] == "/v1/messages"


# -- streaming ---------------------------------------------------------------------

async def test_stream_event_order(client):
    events = await stream_of(client, ASK)
    names = [n for n, _ in events]
    assert names[:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["content"] == [] and start["stop_reason"] is None
    assert start["role"] == "assistant" and start["model"] == "tiny" and start["usage"]["input_tokens"] > 0
    assert events[2][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    deltas = [d for n, d in events if n == "content_block_delta"]
    assert all(d["index"] == 0 and d["delta"]["type"] == "text_delta" for d in deltas)
    assert len(deltas) > 1 and "".join(d["delta"]["text"] for d in deltas) == REPLY
    stop, delta = events[-3][1], events[-2][1]
    assert stop == {"type": "content_block_stop", "index": 0}
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == len(REPLY)
    # the whole prompt is reported at the start; at the end it is split into evaluated and cached tokens
    assert delta["usage"]["input_tokens"] + delta["usage"]["cache_read_input_tokens"] == start["usage"]["input_tokens"]


async def test_empty_answer_is_one_empty_text_block(core_factory):
    core = await core_factory(FakeEngine(reply=""))
    c = create_app(core).test_client()
    body = await json_of(await c.post("/v1/messages", json=ASK))
    assert body["content"] == [{"type": "text", "text": ""}]
    names = [n for n, _ in await stream_of(c, ASK)]
    assert names == ["message_start", "ping", "content_block_start", "content_block_stop", "message_delta",
                     "message_stop"]


async def test_failure_mid_stream_is_an_error_event(core_factory):
    core = await core_factory(FakeEngine(fail_after=2))
    c = create_app(core).test_client()
    events = await stream_of(c, ASK)
    assert events[-1][0] == "error" and "message_stop" not in [n for n, _ in events]
    assert_error(events[-1][1], "api_error")
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "He"
    r = await c.post("/v1/messages", json=ASK)
    assert r.status_code == 500
    assert_error(await json_of(r), "api_error")


# -- tools ---------------------------------------------------------------------------

@pytest.fixture
async def tool_client(core_factory):
    core = await core_factory(FakeEngine(reply="Let me check. " + CALL))
    return create_app(core).test_client()


async def test_tool_use_block(tool_client):
    r = await tool_client.post("/v1/messages", json={**ASK, "max_tokens": 90, "tools": [WEATHER]})
    body = await json_of(r)
    assert r.status_code == 200, body
    text, call = body["content"]
    assert text == {"type": "text", "text": "Let me check."}
    assert call["type"] == "tool_use" and call["id"].startswith("toolu_") and call["name"] == "get_weather"
    assert call["input"] == {"city": "Paris"}
    assert body["stop_reason"] == "tool_use" and body["stop_sequence"] is None


async def test_tool_use_streamed(tool_client):
    events = await stream_of(tool_client, {**ASK, "max_tokens": 90, "tools": [WEATHER]})
    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["text", "tool_use"]
    block = starts[1]["content_block"]
    assert starts[1]["index"] == 1 and block["id"].startswith("toolu_") and block["name"] == "get_weather"
    assert block["input"] == {}
    parts = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == 1]
    assert parts and all(p["type"] == "input_json_delta" for p in parts)
    assert json.loads("".join(p["partial_json"] for p in parts)) == {"city": "Paris"}
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta" and d["index"] == 0)
    assert text.strip() == "Let me check."
    stops = [d["index"] for n, d in events if n == "content_block_stop"]
    assert stops == [0, 1]
    # each block closes before the next opens
    names = [(n, d.get("index")) for n, d in events]
    assert names.index(("content_block_stop", 0)) < names.index(("content_block_start", 1))
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    # streamed and whole answers give the call the same kind of id
    whole = await json_of(await tool_client.post("/v1/messages", json={**ASK, "max_tokens": 90, "tools": [WEATHER]}))
    assert whole["content"][1]["id"].startswith("toolu_")


async def test_forced_tool_choice(tool_client):
    body = {**ASK, "max_tokens": 90, "tools": [WEATHER],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}}
    r = await tool_client.post("/v1/messages", json=body)
    out = await json_of(r)
    assert r.status_code == 200, out
    assert out["stop_reason"] == "tool_use" and out["content"][-1]["input"] == {"city": "Paris"}
    for choice in ({"type": "any"}, {"type": "auto"}, {"type": "none"}):
        r = await tool_client.post("/v1/messages", json={**body, "tool_choice": choice})
        assert r.status_code == 200, (choice, await r.get_data(as_text=True))


def test_blocks_become_core_messages():
    """tool_use blocks become the assistant message's calls; tool_result blocks one tool message each, in order,
    then the turn's text as a user message."""
    body = MessagesRequest.model_validate({
        "model": "tiny", "max_tokens": 10, "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
        "tools": [WEATHER, {"name": "get_time", "input_schema": {"properties": {}}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["", "END"],
        "messages": [
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hm", "signature": "x"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
                 "content": [{"type": "text", "text": "clock"}, {"type": "text", "text": "broken"}]},
                {"type": "text", "text": "Thanks."}]},
        ]})
    req = translate.generate_request(body)
    assert req.dialect == "anthropic" and req.endpoint == "/v1/messages"
    assert req.params == SamplingParams(max_tokens=10, stop=("END",))
    assert req.tool_choice == "required" and req.tool_name is None and req.parallel_tool_calls is False
    assert [t.name for t in req.tools] == ["get_weather", "get_time"]
    assert req.tools[1].parameters == {"type": "object", "properties": {}}
    assert req.messages == (
        ChatMessage("system", "A\n\nB"),
        ChatMessage("user", "Weather and time in Paris?"),
        ChatMessage("assistant", "Checking.", tool_calls=(ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'),
                                                          ToolCall("toolu_2", "get_time", "{}"))),
        ChatMessage("tool", "sunny", tool_call_id="toolu_1", name="get_weather"),
        ChatMessage("tool", "Error: clock\n\nbroken", tool_call_id="toolu_2", name="get_time"),
        ChatMessage("user", "Thanks."),
    )
    forced = translate.generate_request(body.model_copy(update={"tool_choice": None}))
    assert forced.tool_choice == "auto" and forced.parallel_tool_calls


async def test_tool_round_trip_on_the_wire(tool_client):
    """A history with a call and its result is accepted and answered."""
    body = {**ASK, "max_tokens": 100, "tools": [WEATHER], "tool_choice": {"type": "none"}, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "sunny"}]}]}
    r = await tool_client.post("/v1/messages", json=body)
    out = await json_of(r)
    assert r.status_code == 200, out
    assert out["stop_reason"] == "end_turn" and out["content"][0]["type"] == "text"


# -- count_tokens --------------------------------------------------------------------

async def test_count_tokens(client, fake_core):
    r = await client.post("/v1/messages/count_tokens", json={"model": "tiny", "messages": ASK["messages"]})
    assert r.status_code == 200
    plain = await json_of(r)
    assert set(plain) == {"input_tokens"} and plain["input_tokens"] > 0
    # the same prompt as a generation's
    gen = await fake_core.inference.generate(GenerateRequest(messages=(ChatMessage("user", "hi"),), model="tiny"))
    await gen.collect()
    assert plain["input_tokens"] == gen.prompt_tokens
    r = await client.post("/v1/messages/count_tokens", json={"model": "tiny", "messages": ASK["messages"],
                                                             "system": "You are a weather bot.", "tools": [WEATHER]})
    assert (await json_of(r))["input_tokens"] > plain["input_tokens"]
    r = await client.post("/v1/messages/count_tokens", json={"model": "claude-sonnet-4-5", "messages": ASK["messages"]})
    assert r.status_code == 404
    assert_error(await json_of(r), "not_found_error", "claude-sonnet-4-5")


# -- bad input: a 400 naming the field -------------------------------------------------

def _msgs(*content: Any) -> dict:
    return {**ASK, "messages": list(content)}


_USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                          "input": {"city": "Paris"}}]}
BAD: list[tuple[str, dict, str]] = [
    ("no max_tokens", {k: v for k, v in ASK.items() if k != "max_tokens"}, "max_tokens"),
    ("no messages", {k: v for k, v in ASK.items() if k != "messages"}, "messages"),
    ("no model", {k: v for k, v in ASK.items() if k != "model"}, "model"),
    ("max_tokens 0", {**ASK, "max_tokens": 0}, "max_tokens"),
    ("max_tokens a string", {**ASK, "max_tokens": "10"}, "max_tokens"),
    ("temperature above 1", {**ASK, "temperature": 1.5}, "temperature"),
    ("top_p above 1", {**ASK, "top_p": 1.5}, "top_p"),
    ("top_k negative", {**ASK, "top_k": -1}, "top_k"),
    ("stream not a bool", {**ASK, "stream": "yes"}, "stream"),
    ("empty messages", {**ASK, "messages": []}, "messages"),
    ("a tool role", _msgs({"role": "tool", "content": "x"}), "messages[0].role"),
    ("content a number", _msgs({"role": "user", "content": 5}), "messages[0].content"),
    ("an unknown block", _msgs({"role": "user", "content": [{"type": "video"}]}), "messages[0].content[0].type"),
    ("an image", _msgs({"role": "user", "content": [{"type": "text", "text": "look"}, {
        "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}),
     "messages[0].content[1].type"),
    ("a document", _msgs({"role": "user", "content": [{"type": "document", "source": {}}]}),
     "messages[0].content[0].type"),
    ("a text block without text", _msgs({"role": "user", "content": [{"type": "text"}]}),
     "messages[0].content[0].text"),
    ("tool_use from the user", _msgs({"role": "user", "content": _USE["content"]}), "messages[0].content[0].type"),
    ("tool_use without input", _msgs({"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather"}]}), "messages[1].content[0].input"),
    ("tool_use without id", _msgs({"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "tool_use", "name": "get_weather", "input": {}}]}), "messages[1].content[0].id"),
    ("tool_use input not an object", _msgs({"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "get_weather", "input": [1]}]}), "messages[1].content[0].input"),
    ("tool_result from the assistant", _msgs({"role": "assistant", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1"}]}), "messages[0].content[0].type"),
    ("tool_result without tool_use_id", _msgs({"role": "user", "content": "q"}, _USE, {"role": "user", "content": [
        {"type": "tool_result", "content": "x"}]}), "messages[2].content[0].tool_use_id"),
    ("tool_result for no call", _msgs({"role": "user", "content": "q"}, _USE, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_7", "content": "x"}]}), "messages[2].content[0].tool_use_id"),
    ("tool_result with an image", _msgs({"role": "user", "content": "q"}, _USE, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "image", "source": {}}]}]}),
     "messages[2].content[0].content[0].type"),
    ("thinking from the user", _msgs({"role": "user", "content": [{"type": "thinking", "thinking": "x"}]}),
     "messages[0].content[0].type"),
    ("system not text", {**ASK, "system": [{"type": "image"}]}, "system[0].type"),
    ("system a number", {**ASK, "system": 3}, "system"),
    ("thinking enabled", {**ASK, "thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking.type"),
    ("thinking adaptive", {**ASK, "thinking": {"type": "adaptive"}}, "thinking.type"),
    ("a tool name with a space", {**ASK, "tools": [{**WEATHER, "name": "get weather"}]}, "tools[0].name"),
    ("a tool without input_schema", {**ASK, "tools": [{"name": "x"}]}, "tools[0].input_schema"),
    ("a server tool", {**ASK, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ("a tool schema that is no object", {**ASK, "tools": [{"name": "x", "input_schema": {"type": "array"}}]},
     "tools[0].input_schema.type"),
    ("a tool given twice", {**ASK, "tools": [WEATHER, WEATHER]}, "tools[1].name"),
    ("tool_choice tool without name", {**ASK, "tools": [WEATHER], "tool_choice": {"type": "tool"}},
     "tool_choice.name"),
    ("tool_choice of an unknown tool", {**ASK, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "x"}},
     "tool_choice.name"),
    ("tool_choice any without tools", {**ASK, "tool_choice": {"type": "any"}}, "tool_choice.type"),
    ("tool_choice of another type", {**ASK, "tools": [WEATHER], "tool_choice": {"type": "required"}},
     "tool_choice.type"),
    ("tool_choice a string", {**ASK, "tools": [WEATHER], "tool_choice": "auto"}, "tool_choice"),
    ("too many stop sequences", {**ASK, "stop_sequences": [f"s{i}" for i in range(17)]}, "stop_sequences"),
    ("stop_sequences a string", {**ASK, "stop_sequences": "END"}, "stop_sequences"),
    ("metadata a string", {**ASK, "metadata": "x"}, "metadata"),
    ("an unknown service tier", {**ASK, "service_tier": "premium"}, "service_tier"),
]


@pytest.mark.parametrize("what,body,field", BAD, ids=[b[0] for b in BAD])
async def test_bad_input_is_a_400_naming_the_field(client, what, body, field):
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        if path.endswith("count_tokens") and field in ("max_tokens", "temperature", "top_p", "top_k", "stream",
                                                       "stop_sequences", "metadata", "service_tier"):
            continue  # fields of generation only (count_tokens ignores them, as unknown fields)
        r = await client.post(path, json=body)
        assert r.status_code == 400, (path, await r.get_data(as_text=True))
        assert_error(await json_of(r), "invalid_request_error", field)


async def test_bodies_that_are_not_json(client):
    for data in (b"", b"not json", b"[1]", b'{"model": '):
        r = await client.post("/v1/messages", data=data, headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        assert_error(await json_of(r), "invalid_request_error")


async def test_unknown_model_is_not_found(client):
    r = await client.post("/v1/messages", json={**ASK, "model": "claude-opus-4-1"})
    assert r.status_code == 404
    assert_error(await json_of(r), "not_found_error", "claude-opus-4-1")


async def test_too_long_a_prompt_is_invalid(client):
    r = await client.post("/v1/messages", json={**ASK, "max_tokens": 100_000})
    assert r.status_code == 400
    assert_error(await json_of(r), "invalid_request_error")


# -- routing: its paths in its envelope ---------------------------------------------------

async def test_its_paths_answer_in_its_envelope(client):
    for method, path in (("GET", "/v1/messages"), ("DELETE", "/v1/messages"), ("GET", "/v1/messages/count_tokens"),
                         ("PUT", "/v1/messages/count_tokens")):
        r = await client.open(path, method=method)
        assert r.status_code == 405, (method, path)
        assert_error(await json_of(r), "invalid_request_error", method)
        assert "POST" in r.headers["Allow"]
    for path in ("/v1/messages/batches", "/v1/messages/", "/v1/messages/x/y", "/v1/messages/a%0Ab"):
        r = await client.post(path, json=ASK)
        assert r.status_code == 404, path
        assert_error(await json_of(r), "not_found_error")
    # the rest of /v1/ stays the OpenAI API's
    for path in ("/v1/messagesx", "/v1/message", "/v1/nothing"):
        r = await client.post(path, json=ASK)
        assert r.status_code == 404 and set((await json_of(r))["error"]) >= {"param", "code"}, path


async def test_body_too_large_is_request_too_large(core_factory):
    core = await core_factory(**{"server.max_body_bytes": 1024})
    c = create_app(core).test_client()
    r = await c.post("/v1/messages", json={**ASK, "system": "x" * 4096})
    assert r.status_code == 413
    assert_error(await json_of(r), "request_too_large")


async def test_busy_is_overloaded_with_retry_after(core_factory):
    core = await core_factory(FakeEngine(delay_s=0.01), **{"engine.queue_size": 0, "engine.parallel": 1})
    running = await core.inference.generate(
        GenerateRequest(prompt="x", params=SamplingParams(ignore_eos=True, max_tokens=200)))
    it = running.__aiter__()
    await asyncio.wait_for(it.__anext__(), 5)
    c = create_app(core).test_client()
    r = await c.post("/v1/messages", json=ASK)
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
    assert_error(await json_of(r), "overloaded_error")
    await it.aclose()


async def test_unexpected_exception_is_api_error_without_detail(client, fake_core, monkeypatch):
    async def explode(*args, **kwargs):
        raise RuntimeError("secret-detail")

    monkeypatch.setattr(fake_core.inference, "generate", explode)
    r = await client.post("/v1/messages", json=ASK)
    assert r.status_code == 500
    assert "secret-detail" not in assert_error(await json_of(r), "api_error")


# -- auth: x-api-key is an llmd key ------------------------------------------------------

async def test_x_api_key_is_an_llmd_key(core_factory, tiny_gguf):
    core = await core_factory(**{"auth.mode": "on", "auth.max_failure_delay_s": 0.0})
    _, key = await core.auth.create_key("claude-code", "inference")
    c = create_app(core).test_client()
    version = {"anthropic-version": "2023-06-01"}
    r = await c.post("/v1/messages", json=ASK, headers=version, scope_base=LAN)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(await json_of(r), "authentication_error")
    r = await c.post("/v1/messages", json=ASK, headers={**version, "x-api-key": "llmd_" + "x" * 43}, scope_base=LAN)
    assert r.status_code == 401
    assert "llmd_" not in assert_error(await json_of(r), "authentication_error")
    for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
        r = await c.post("/v1/messages", json=ASK, headers={**version, **headers}, scope_base=LAN)
        assert r.status_code == 200, await r.get_data(as_text=True)
        r = await c.post("/v1/messages/count_tokens", json={"model": "tiny", "messages": ASK["messages"]},
                         headers={**version, **headers}, scope_base=LAN)
        assert r.status_code == 200
    # a wrong method on its path still needs a credential, and is refused in its envelope
    r = await c.get("/v1/messages", scope_base=LAN)
    assert r.status_code == 401
    assert_error(await json_of(r), "authentication_error")
    # a key limited to another model
    await core.registry.add_file(tiny_gguf, "second")
    _, limited = await core.auth.create_key("only-second", "inference", models=["second"])
    r = await c.post("/v1/messages", json=ASK, headers={"x-api-key": limited}, scope_base=LAN)
    assert r.status_code == 403
    assert_error(await json_of(r), "permission_error", "tiny")


async def test_rate_limit_is_rate_limit_error(core_factory):
    core = await core_factory(**{"ratelimit.enabled": "on", "ratelimit.burst": 1,
                                 "ratelimit.requests_per_minute": 1})
    c = create_app(core).test_client()
    assert (await c.post("/v1/messages/count_tokens", json={"model": "tiny", "messages": ASK["messages"]},
                         scope_base=LAN)).status_code == 200
    r = await c.post("/v1/messages", json=ASK, scope_base=LAN)
    assert r.status_code == 429 and "X-RateLimit-Limit" in r.headers
    assert_error(await json_of(r), "rate_limit_error")
