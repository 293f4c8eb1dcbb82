"""The official anthropic SDK against the real daemon and model: messages, streams, tools, token counts.

SmolLM2's template has no tool support, so the tool tests run the core's fallback prompt and parser; a forced
``tool_choice`` is a grammar, so the 135M model's ``input`` validates against the tool's schema whatever it
would have written.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

pytestmark = pytest.mark.e2e

WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# Recent SDKs have no temperature argument (it goes in the body as any other field): greedy, so runs repeat.
GREEDY = {"temperature": 0}


@pytest.fixture
def client(daemon):
    # The daemon runs without auth: any key goes (it would be an llmd API key, sent as x-api-key).
    return anthropic.Anthropic(base_url=daemon.url, api_key="unused", max_retries=0, timeout=120)


def check_input(value: Any, schema: dict) -> None:
    """``value`` validates against ``schema`` (jsonschema where installed, else the keys and types)."""
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        jsonschema.validate(value, schema)
        return
    assert isinstance(value, dict)
    for key in schema.get("required", []):
        assert key in value, (key, value)
    for key, prop in schema["properties"].items():
        if key in value:
            assert isinstance(value[key], str), (key, value)
            assert "enum" not in prop or value[key] in prop["enum"], (key, value)


def test_create(client):
    m = client.messages.create(model="default", max_tokens=24, extra_body=GREEDY,
                               system="You answer in one short sentence.",
                               messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert m.model == "smollm2-135m-instruct"
    assert m.content[0].type == "text" and m.content[0].text.strip()
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) > 5
    assert 0 < m.usage.output_tokens <= 24


def test_max_tokens_and_stop_sequences(client):
    m = client.messages.create(model="default", max_tokens=5, extra_body=GREEDY,
                               messages=[{"role": "user", "content": "Write a long story about a dragon."}])
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 5
    m = client.messages.create(model="default", max_tokens=40, extra_body=GREEDY, stop_sequences=["3"],
                               messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}])
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == "3", m
    assert "3" not in m.content[0].text


def test_stream_text(client):
    with client.messages.stream(model="default", max_tokens=20, extra_body=GREEDY,
                                messages=[{"role": "user", "content": "Count from one to five."}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("text") > 1, "the answer must arrive in several deltas"
    assert final.content[0].type == "text" and final.content[0].text.strip()
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0
    # the text helper on a fresh stream gives the same text
    with client.messages.stream(model="default", max_tokens=20, extra_body=GREEDY,
                                messages=[{"role": "user", "content": "Count from one to five."}]) as stream:
        text = "".join(stream.text_stream)
    assert text == final.content[0].text


def test_forced_tool_use(client):
    m = client.messages.create(model="default", max_tokens=96, extra_body=GREEDY, messages=ASK, tools=[WEATHER],
                               tool_choice={"type": "tool", "name": "get_weather"})
    assert m.stop_reason == "tool_use", m
    (call,) = [b for b in m.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    check_input(call.input, WEATHER["input_schema"])


def test_forced_tool_use_streamed(client):
    with client.messages.stream(model="default", max_tokens=96, extra_body=GREEDY, messages=ASK, tools=[WEATHER],
                                tool_choice={"type": "tool", "name": "get_weather",
                                             "disable_parallel_tool_use": True}) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds and "content_block_start" in kinds
    assert final.stop_reason == "tool_use"
    (call,) = [b for b in final.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.id.startswith("toolu_")
    check_input(call.input, WEATHER["input_schema"])


def test_tool_round_trip(client):
    """tool_use, then its tool_result, then the model's text answer."""
    first = client.messages.create(model="default", max_tokens=96, extra_body=GREEDY, messages=ASK, tools=[WEATHER],
                                   tool_choice={"type": "any"})
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    history = [*ASK, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                             "content": "Sunny, 22 degrees celsius."}]}]
    final = client.messages.create(model="default", max_tokens=48, extra_body=GREEDY, messages=history,
                                   tools=[WEATHER], tool_choice={"type": "none"})
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert [b.type for b in final.content] == ["text"] and final.content[0].text.strip()


def test_count_tokens(client):
    plain = client.messages.count_tokens(model="default", messages=ASK)
    assert plain.input_tokens > 5
    with_tools = client.messages.count_tokens(model="default", messages=ASK, tools=[WEATHER])
    assert with_tools.input_tokens > plain.input_tokens
    # what a generation reports as its prompt
    m = client.messages.create(model="default", max_tokens=1, messages=ASK)
    assert m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) == plain.input_tokens


def test_errors_are_the_sdks_exceptions(client):
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(model="claude-no-such-model", max_tokens=8, messages=ASK)
    assert err.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="default", max_tokens=8, messages=ASK, extra_body={"temperature": 1.5})
    assert "temperature" in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="default", max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}])
    assert "messages[0].content[0].type" in err.value.body["error"]["message"]
