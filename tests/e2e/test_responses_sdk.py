"""The OpenAI Responses API with the official openai SDK, on the real daemon and model.

``client.responses.create`` and ``.stream``, function tools (a forced choice is a grammar, so the 135M model's
call parses and validates) and their outputs sent back, structured output, the stored conversation across a
daemon restart, and token counting.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from daemonproc import DaemonProcess

pytestmark = pytest.mark.e2e

WEATHER = {
    "type": "function", "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False},
    "strict": True,
}
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 150}},
          "required": ["name", "age"], "additionalProperties": False}


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture
def client(daemon):
    return sdk(daemon.url)


def test_create_with_a_string(client):
    r = client.responses.create(model="default", input="What is the capital of France?", max_output_tokens=24,
                                temperature=0)
    assert r.id.startswith("resp_") and r.object == "response"
    assert r.status in ("completed", "incomplete")
    assert r.model == "smollm2-135m-instruct"
    assert r.output_text.strip()
    [msg] = r.output
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert r.usage.input_tokens > 5 and 0 < r.usage.output_tokens <= 24
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_items_with_instructions(client):
    r = client.responses.create(
        model="default", instructions="You are a helpful assistant. Answer in one short sentence.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Name a colour of the sky."}]}],
        max_output_tokens=32, temperature=0, metadata={"suite": "e2e"})
    assert r.output_text.strip()
    assert r.instructions.startswith("You are a helpful assistant")
    assert r.metadata == {"suite": "e2e"}
    counted = client.responses.input_tokens.count(
        model="default", instructions="You are a helpful assistant. Answer in one short sentence.",
        input="Name a colour of the sky.")
    assert r.usage.input_tokens == counted.input_tokens  # the instructions were the prompt's system message
    items = client.responses.input_items.list(r.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]
    assert items.data[0].content[0].text == "Name a colour of the sky."


def test_max_output_tokens_is_incomplete(client):
    r = client.responses.create(model="default", input="Write a long story about a dragon.", max_output_tokens=5,
                                temperature=0)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 5
    assert r.output[0].status == "incomplete"


def test_stream_gives_text_deltas_and_the_final_response(client):
    with client.responses.stream(model="default", input="Give a JSON object with a key a set to 1.",
                                 text={"format": {"type": "json_object"}}, max_output_tokens=64,
                                 temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1, "the answer must arrive in several events"
    assert "".join(deltas) == final.output_text
    assert isinstance(json.loads(final.output_text), dict)
    assert final.status == "completed" and final.usage.output_tokens > 0
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_stream_cut_by_max_output_tokens_ends_incomplete(client):
    with client.responses.stream(model="default", input="Write a long story about a dragon.", max_output_tokens=4,
                                 temperature=0) as stream:
        kinds = [e.type for e in stream]
    assert kinds[-1] == "response.incomplete"
    assert "response.output_text.done" in kinds and "response.output_item.done" in kinds


def test_a_forced_function_call_and_its_output_round_trip(client):
    r = client.responses.create(model="default", input="What is the weather in Paris?", tools=[WEATHER],
                                tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=96,
                                temperature=0)
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1, r.output
    call = calls[0]
    assert call.name == "get_weather" and call.call_id and call.id.startswith("fc_")
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    # The conversation continues from the stored response with the call's output...
    r2 = client.responses.create(model="default", previous_response_id=r.id, tools=[WEATHER],
                                 input=[{"type": "function_call_output", "call_id": call.call_id,
                                         "output": "Sunny, 22 degrees celsius."}],
                                 max_output_tokens=48, temperature=0)
    assert r2.previous_response_id == r.id and r2.output_text.strip()
    kinds = [i.type for i in client.responses.input_items.list(r2.id, order="asc").data]
    assert kinds == ["message", "function_call", "function_call_output"]
    # ... and without it: the client sends the items back itself (store false).
    r3 = client.responses.create(
        model="default", store=False, tools=[WEATHER], max_output_tokens=48, temperature=0,
        input=[{"role": "user", "content": "What is the weather in Paris?"}, *[o.model_dump() for o in r.output],
               {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 22 degrees celsius."}])
    assert r3.output_text.strip()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r3.id)


def test_a_streamed_required_call(client):
    with client.responses.stream(model="default", input="What is the weather in Oslo?", tools=[WEATHER],
                                 tool_choice="required", max_output_tokens=96, temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    [call] = [o for o in final.output if o.type == "function_call"]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == call.arguments
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def test_json_schema_format_gives_json_that_follows_it(client):
    r = client.responses.create(model="default", input="Invent a person: a name and an age.", temperature=0,
                                max_output_tokens=96,
                                text={"format": {"type": "json_schema", "name": "person", "schema": PERSON,
                                                 "strict": True}})
    assert r.status == "completed", r
    jsonschema.validate(json.loads(r.output_text), PERSON)
    assert r.text.format.type == "json_schema" and r.text.format.name == "person"


def test_input_tokens(client):
    short = client.responses.input_tokens.count(model="default", input="Hello")
    assert short.object == "response.input_tokens" and short.input_tokens > 0
    longer = client.responses.input_tokens.count(model="default", input="Hello", tools=[WEATHER])
    assert longer.input_tokens > short.input_tokens
    r = client.responses.create(model="default", input="Hello", max_output_tokens=4, temperature=0)
    assert r.usage.input_tokens == short.input_tokens


def test_refusals_name_the_field(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="default", input="hi", tools=[{"type": "web_search"}])
    assert err.value.body["param"] == "tools[0].type"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="default", input="hi", background=True)
    assert err.value.body["param"] == "background"
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="default", input="hi", previous_response_id="resp_nothing")
    assert err.value.body["param"] == "previous_response_id"


def test_a_conversation_survives_a_restart(short_tmp):
    d = DaemonProcess(short_tmp).start().wait_loaded()
    try:
        first = sdk(d.url).responses.create(model="default", input="My name is Ada. Remember it.",
                                            max_output_tokens=16, temperature=0)
    finally:
        assert d.stop() == 0
    again = DaemonProcess(short_tmp, port=None).start().wait_loaded()
    try:
        c = sdk(again.url)
        old = c.responses.retrieve(first.id)
        assert old.output_text == first.output_text and old.status == first.status
        second = c.responses.create(model="default", previous_response_id=first.id, input="What is my name?",
                                    max_output_tokens=16, temperature=0)
        assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
        texts = [p.text for i in c.responses.input_items.list(second.id, order="asc").data for p in i.content]
        assert texts == ["My name is Ada. Remember it.", first.output_text, "What is my name?"]
        deleted = c.responses.with_raw_response.delete(first.id).http_response.json()  # the SDK returns None
        assert deleted == {"id": first.id, "object": "response.deleted", "deleted": True}
        with pytest.raises(openai.NotFoundError):
            c.responses.retrieve(first.id)
        assert c.responses.retrieve(second.id).previous_response_id == first.id  # its copy of the turns stays
    finally:
        again.stop()
