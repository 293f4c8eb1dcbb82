"""Tool calling through the OpenAI API on the real daemon and model: the openai SDK and LangChain.

SmolLM2's template has no tool support, so these run the fallback prompt and the Hermes-form parser; a forced
choice is a grammar, so the 135M model's calls parse and validate whatever it would have written.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.e2e

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "description": "The time in a timezone.",
                 "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}},
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def client(daemon):
    return openai.OpenAI(base_url=f"{daemon.url}/v1", api_key="unused", max_retries=0, timeout=120)


def check_call(name: str, arguments: str) -> dict:
    schema = {"get_weather": WEATHER, "get_time": TIME}[name]["function"]["parameters"]
    args = json.loads(arguments)
    jsonschema.validate(args, schema)
    return args


def test_a_named_tool_choice_is_called_with_valid_arguments(client):
    r = client.chat.completions.create(
        model="default", messages=ASK, tools=[WEATHER, TIME], max_tokens=96, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    check_call(call.function.name, call.function.arguments)


def test_required_streams_tool_call_deltas_the_sdk_assembles(client):
    with client.beta.chat.completions.stream(
            model="default", messages=ASK, tools=[WEATHER, TIME], tool_choice="required", max_tokens=96,
            temperature=0, parallel_tool_calls=False) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in kinds or "tool_calls.function.arguments.done" in kinds
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    check_call(call.function.name, call.function.arguments)
    # the raw chunks too: the first delta of the call has its index, id and name
    chunks = list(client.chat.completions.create(
        model="default", messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=96, temperature=0,
        stream=True))
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or []) if c.choices]
    assert deltas[0].index == 0 and deltas[0].id and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas))["city"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_full_round_trip(client):
    first = client.chat.completions.create(
        model="default", messages=ASK, tools=[WEATHER], max_tokens=96, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]
    messages = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21, "sky": "clear"})},
    ]
    final = client.chat.completions.create(model="default", messages=messages, tools=[WEATHER],
                                           tool_choice="none", max_tokens=48, temperature=0)
    choice = final.choices[0]
    assert choice.finish_reason in ("stop", "length") and not choice.message.tool_calls
    assert choice.message.content.strip()


def test_bad_tools_are_refused_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="default", messages=ASK, tools=[{"type": "function",
                                                                               "function": {"name": "bad name"}}])
    assert err.value.body["param"] == "tools[0].function.name"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="default", messages=ASK, tools=[WEATHER],
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
    assert err.value.body["param"] == "tool_choice"


def test_langchain_bind_tools_with_a_forced_choice(daemon):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return "sunny"

    llm = ChatOpenAI(base_url=f"{daemon.url}/v1", api_key="unused", model="default", temperature=0,
                     max_tokens=96, max_retries=0)
    msg = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    (call,) = msg.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"].get("city"), str)
