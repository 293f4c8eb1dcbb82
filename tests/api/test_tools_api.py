"""Tool calling through the core and the OpenAI API on a FakeEngine whose scripted answer is a tool call:
the prompt the template gets, the parsed calls, the streamed deltas, and bad input naming its field."""

from __future__ import annotations

import json

import pytest
from helpers import parse_sse

from llmd.core.engine.fake import FakeEngine
from llmd.core.types import ChatMessage, FinishReason, GenerateRequest, ToolCall, ToolCallDelta, ToolSpec
from llmd.http import create_app

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
async def tool_core(core_factory):
    return await core_factory(FakeEngine(reply="Let me check. " + CALL))


async def test_the_core_parses_calls_out_of_the_answer(tool_core):
    req = GenerateRequest(messages=(ChatMessage("user", "Weather?"),), model="tiny",
                          tools=(ToolSpec("get_weather", None, WEATHER["function"]["parameters"]),))
    gen = await tool_core.inference.generate(req)
    events = [e async for e in gen]
    result = gen.result
    assert result.finish_reason is FinishReason.TOOL_CALLS and result.text == "Let me check."
    (call,) = result.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].id == call.id and deltas[0].name == "get_weather"
    assert "".join(d.arguments for d in deltas) == call.arguments
    # the prompt: the fallback instructions in a system message, since the fake's ChatML has no tools
    prompt = await tool_core.inference.render_prompt(req)
    assert prompt.startswith("<|im_start|>system\n") and "get_weather" in prompt and "<tool_call>" in prompt
    assert await tool_core.inference.count_tokens(req) > 10


async def test_history_calls_and_results_are_written_for_a_template_without_tools(tool_core):
    req = GenerateRequest(model="tiny", tools=(ToolSpec("get_weather"),), tool_choice="none", messages=(
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        ChatMessage("tool", '{"sky": "clear"}', tool_call_id="call_1")))
    prompt = await tool_core.inference.render_prompt(req)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert '<tool_response>\n{"sky": "clear"}\n</tool_response>' in prompt
    # tool_choice none: no tool instructions, and the answer is not parsed
    assert "You can call functions" not in prompt
    gen = await tool_core.inference.generate(req)
    result = await gen.collect_or_raise()
    assert not result.tool_calls and CALL in result.text


async def test_openai_chat_renders_tool_calls(tool_core):
    client = create_app(tool_core).test_client()
    r = await client.post("/v1/chat/completions", json={"model": "tiny", "messages": ASK, "tools": [WEATHER]})
    body = await r.get_json()
    assert r.status_code == 200, body
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Let me check."
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"] == {"name": "get_weather",
                                                               "arguments": '{"city": "Paris"}'}


async def test_openai_stream_sends_tool_call_deltas(tool_core):
    client = create_app(tool_core).test_client()
    r = await client.post("/v1/chat/completions", json={"model": "tiny", "messages": ASK, "tools": [WEATHER],
                                                        "stream": True})
    events = parse_sse(await r.get_data(as_text=True))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Let me check."
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["index"] == 0 and calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("body, param", [
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}}, "tool_choice"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}, "messages[0].tool_calls"),
])
async def test_bad_tool_input_is_a_400_naming_the_field(tool_core, body, param):
    client = create_app(tool_core).test_client()
    r = await client.post("/v1/chat/completions", json={"model": "tiny", "messages": ASK, **body})
    out = await r.get_json()
    assert r.status_code == 400 and out["error"]["param"] == param, out
