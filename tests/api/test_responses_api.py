"""The OpenAI Responses API (/v1/responses) on a FakeEngine: answers, typed event streams, function calls,
the stored round trip (GET, DELETE, input items, previous_response_id), token counts, retention, and bad input
naming its field."""

from __future__ import annotations

import json
import time

import pytest
from helpers import wait_requests

from llmd.core.engine.fake import FakeEngine
from llmd.core.responses import ResponseItem, chat_messages
from llmd.core.types import ToolCall
from llmd.http import create_app

REPLY = "Hello from the fake engine."
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def client(fake_core):
    return create_app(fake_core).test_client()


@pytest.fixture
async def tool_client(core_factory):
    return create_app(await core_factory(FakeEngine(reply="Let me check. " + CALL))).test_client()


async def create(client, **body):
    r = await client.post("/v1/responses", json={"model": "tiny", **body})
    data = await r.get_json()
    assert r.status_code == 200, data
    return data


def events_of(text: str) -> list[tuple[str, dict]]:
    """(event, data) of each typed SSE event; the data's type must be the event's."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"], block
        out.append((lines["event"], data))
    return out


async def stream(client, **body) -> list[tuple[str, dict]]:
    r = await client.post("/v1/responses", json={"model": "tiny", "stream": True, **body})
    text = await r.get_data(as_text=True)
    assert r.status_code == 200, text
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = events_of(text)
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    return events


def output_text(resp: dict) -> str:
    return "".join(p["text"] for o in resp["output"] if o["type"] == "message" for p in o["content"]
                   if p["type"] == "output_text")


def assert_error(body: dict, param: str | None = None, code: str | None = None) -> dict:
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


# -- answers -----------------------------------------------------------------------------------------

async def test_a_string_input_is_answered_and_stored(client, fake_core):
    r = await create(client, input="hi", max_output_tokens=100, temperature=0.5, top_p=0.9,
                     metadata={"k": "v"}, user="u1")
    assert r["id"].startswith("resp_") and r["object"] == "response" and r["status"] == "completed"
    assert r["model"] == "tiny" and r["error"] is None and r["incomplete_details"] is None
    [msg] = r["output"]
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["status"] == "completed"
    assert msg["id"].startswith("msg_")
    assert msg["content"] == [{"type": "output_text", "text": REPLY, "annotations": [], "logprobs": []}]
    assert r["usage"]["output_tokens"] == len(REPLY) and r["usage"]["input_tokens"] > 0
    assert r["usage"]["total_tokens"] == r["usage"]["input_tokens"] + r["usage"]["output_tokens"]
    assert r["usage"]["output_tokens_details"] == {"reasoning_tokens": 0}
    assert "cached_tokens" in r["usage"]["input_tokens_details"]
    assert (r["max_output_tokens"], r["temperature"], r["top_p"]) == (100, 0.5, 0.9)
    assert (r["metadata"], r["user"], r["store"], r["tools"], r["tool_choice"]) == ({"k": "v"}, "u1", True, [], "auto")
    assert r["text"]["format"] == {"type": "text"} and r["truncation"] == "disabled"
    assert isinstance(r["created_at"], int) and isinstance(r["completed_at"], int)
    got = await client.get(f"/v1/responses/{r['id']}")
    assert got.status_code == 200 and await got.get_json() == r
    [row] = await wait_requests(fake_core, 1)
    assert (row["dialect"], row["endpoint"]) == ("openai", "/v1/responses")


async def test_items_with_instructions(client):
    r = await create(client, instructions="Be brief.", input=[
        {"role": "developer", "content": "Answer in French."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say "},
                                                         {"type": "input_text", "text": "hello."}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Bonjour."}]},
        {"role": "user", "content": "Again."}])
    assert r["instructions"] == "Be brief." and output_text(r) == REPLY
    count = await client.post("/v1/responses/input_tokens", json={"model": "tiny", "instructions": "Be brief.",
                                                                  "input": [
        {"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Say hello."},
        {"role": "assistant", "content": "Bonjour."}, {"role": "user", "content": "Again."}]})
    assert await count.get_json() == {"object": "response.input_tokens", "input_tokens": r["usage"]["input_tokens"]}
    page = await (await client.get(f"/v1/responses/{r['id']}/input_items?order=asc")).get_json()
    assert [(i["role"], [p["type"] for p in i["content"]]) for i in page["data"]] == [
        ("developer", ["input_text"]), ("user", ["input_text", "input_text"]), ("assistant", ["output_text"]),
        ("user", ["input_text"])]


def test_items_become_a_chat():
    items = (ResponseItem("message", "m1", role="developer", content=("Rules.",)),
             ResponseItem("message", "m2", role="user", content=("Weather", "?")),
             ResponseItem("message", "m3", role="assistant", content=("Checking.",)),
             ResponseItem("function_call", "f1", call_id="c1", name="get_weather", arguments='{"city":"Paris"}'),
             ResponseItem("function_call", "f2", call_id="c2", name="get_time", arguments="{}"),
             ResponseItem("function_call_output", "o1", call_id="c1", output="sunny"),
             ResponseItem("function_call_output", "o2", call_id="c2", output="noon"),
             ResponseItem("function_call", "f3", call_id="c3", name="get_weather", arguments="{}"))
    msgs = chat_messages("Be brief.", items)
    assert [(m.role, m.content) for m in msgs] == [
        ("system", "Be brief."), ("system", "Rules."), ("user", "Weather?"), ("assistant", "Checking."),
        ("tool", "sunny"), ("tool", "noon"), ("assistant", "")]
    assert msgs[3].tool_calls == (ToolCall("c1", "get_weather", '{"city":"Paris"}'), ToolCall("c2", "get_time", "{}"))
    assert (msgs[4].tool_call_id, msgs[4].name, msgs[5].tool_call_id, msgs[5].name) == ("c1", "get_weather", "c2",
                                                                                        "get_time")
    assert msgs[6].tool_calls == (ToolCall("c3", "get_weather", "{}"),)


async def test_max_output_tokens_makes_it_incomplete(client):
    r = await create(client, input="hi", max_output_tokens=5)
    assert r["status"] == "incomplete" and r["incomplete_details"] == {"reason": "max_output_tokens"}
    assert r["completed_at"] is None and r["usage"]["output_tokens"] == 5
    assert r["output"][0]["status"] == "incomplete" and output_text(r) == REPLY[:5]
    events = await stream(client, input="hi", max_output_tokens=5)
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    done = [d for k, d in events if k == "response.output_item.done"]
    assert done[0]["item"]["status"] == "incomplete"


# -- streams -----------------------------------------------------------------------------------------

async def test_a_stream_is_openai_typed_events(client):
    events = await stream(client, input="hi", instructions="Be brief.")
    kinds = [k for k, _ in events]
    deltas = [d for k, d in events if k == "response.output_text.delta"]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * len(deltas),
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"]
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    added = events[2][1]
    assert added["output_index"] == 0 and added["item"]["status"] == "in_progress" and added["item"]["content"] == []
    item_id = added["item"]["id"]
    assert all(d["item_id"] == item_id and d["output_index"] == 0 and d["content_index"] == 0 for d in deltas)
    assert "".join(d["delta"] for d in deltas) == REPLY
    assert next(d for k, d in events if k == "response.output_text.done")["text"] == REPLY
    assert events[-2][1]["item"]["content"][0]["text"] == REPLY
    final = events[-1][1]["response"]
    assert final["id"] == created["id"] and final["status"] == "completed" and output_text(final) == REPLY
    assert final["output"][0]["id"] == item_id
    stored = await (await client.get(f"/v1/responses/{final['id']}")).get_json()
    assert stored == final


async def test_a_failure_mid_stream_is_an_error_event_then_response_failed(core_factory):
    client = create_app(await core_factory(FakeEngine(fail_after=3))).test_client()
    events = await stream(client, input="hi")
    assert [k for k, _ in events[-2:]] == ["error", "response.failed"]
    assert events[-2][1]["code"] and events[-2][1]["message"]
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == events[-2][1]["code"]
    assert output_text(failed) == REPLY[:3]
    stored = await (await client.get(f"/v1/responses/{failed['id']}")).get_json()
    assert stored["status"] == "failed"
    r = await client.post("/v1/responses", json={"model": "tiny", "input": "hi"})
    assert r.status_code == 500
    assert_error(await r.get_json())


# -- function tools ------------------------------------------------------------------------------------

async def test_function_calls_are_output_items(tool_client):
    r = await create(tool_client, input="Weather in Paris?", tools=[WEATHER])
    assert r["status"] == "completed"
    msg, call = r["output"]
    assert msg["type"] == "message" and msg["content"][0]["text"] == "Let me check."
    assert call["type"] == "function_call" and call["id"].startswith("fc_") and call["call_id"]
    assert (call["name"], json.loads(call["arguments"]), call["status"]) == ("get_weather", {"city": "Paris"},
                                                                             "completed")
    assert r["tools"] == [{**WEATHER, "strict": True}]


async def test_streamed_function_calls(tool_client):
    events = await stream(tool_client, input="Weather in Paris?", tools=[WEATHER], tool_choice="auto")
    kinds = [k for k, _ in events]
    added = [d for k, d in events if k == "response.output_item.added"]
    assert [a["item"]["type"] for a in added] == ["message", "function_call"]
    call = added[1]["item"]
    assert call["name"] == "get_weather" and call["arguments"] == "" and call["status"] == "in_progress"
    args = "".join(d["delta"] for k, d in events if k == "response.function_call_arguments.delta")
    done = next(d for k, d in events if k == "response.function_call_arguments.done")
    assert json.loads(args) == {"city": "Paris"} and done["arguments"] == args and done["item_id"] == call["id"]
    assert kinds.index("response.output_item.done") < kinds.index("response.output_item.added", 3)  # the text first
    final = events[-1][1]["response"]
    assert kinds[-1] == "response.completed" and final["output"][1]["arguments"] == args
    assert final["output"][1]["call_id"] == call["call_id"]


async def test_a_call_output_continues_the_stored_conversation(tool_client):
    first = await create(tool_client, input="Weather in Paris?", instructions="Use tools.", tools=[WEATHER])
    call = first["output"][1]
    second = await create(tool_client, previous_response_id=first["id"], tools=[WEATHER], input=[
        {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}])
    assert second["previous_response_id"] == first["id"]
    assert second["instructions"] is None  # not carried over
    page = await (await tool_client.get(f"/v1/responses/{second['id']}/input_items?order=asc")).get_json()
    assert [i["type"] for i in page["data"]] == ["message", "message", "function_call", "function_call_output"]
    assert page["data"][2] == call and page["data"][3]["output"] == "sunny"
    # stateless: the same items sent back by the client give the same prompt
    count = await tool_client.post("/v1/responses/input_tokens", json={
        "model": "tiny", "tools": [WEATHER], "input": [
            {"role": "user", "content": "Weather in Paris?"}, *first["output"],
            {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]})
    assert (await count.get_json())["input_tokens"] == second["usage"]["input_tokens"]


async def test_forced_tool_choices(tool_client):
    for choice in ("required", {"type": "function", "name": "get_weather"}):
        r = await create(tool_client, input="Weather?", tools=[WEATHER], tool_choice=choice)
        assert [o["type"] for o in r["output"]][-1] == "function_call"
        assert r["tool_choice"] == choice


# -- stored responses ----------------------------------------------------------------------------------

async def test_store_false_keeps_nothing(client):
    r = await create(client, input="hi", store=False)
    assert r["store"] is False
    got = await client.get(f"/v1/responses/{r['id']}")
    assert got.status_code == 404
    assert_error(await got.get_json(), param="response_id", code="not_found")
    again = await client.post("/v1/responses", json={"model": "tiny", "input": "more",
                                                     "previous_response_id": r["id"]})
    assert again.status_code == 404
    err = assert_error(await again.get_json(), param="previous_response_id")
    assert r["id"] in err["message"]


async def test_delete(client):
    r = await create(client, input="hi")
    gone = await client.delete(f"/v1/responses/{r['id']}")
    assert gone.status_code == 200
    assert await gone.get_json() == {"id": r["id"], "object": "response.deleted", "deleted": True}
    assert (await client.get(f"/v1/responses/{r['id']}")).status_code == 404
    assert (await client.get(f"/v1/responses/{r['id']}/input_items")).status_code == 404
    again = await client.delete(f"/v1/responses/{r['id']}")
    assert again.status_code == 404
    assert_error(await again.get_json(), param="response_id")


async def test_unknown_ids_and_paths(client):
    for path in ("/v1/responses/resp_nothing", "/v1/responses/resp_nothing/input_items"):
        r = await client.get(path)
        assert r.status_code == 404
        assert "resp_nothing" in assert_error(await r.get_json(), param="response_id")["message"]
    r = await client.get("/v1/responses/not-a-response-id")
    assert r.status_code == 404
    assert_error(await r.get_json())
    for method in ("GET", "DELETE"):  # never read as an id
        r = await client.open("/v1/responses/input_tokens", method=method)
        assert r.status_code == 405, method
        assert_error(await r.get_json())


async def test_a_continued_conversation_keeps_its_own_copy(client):
    first = await create(client, input="one")
    second = await create(client, input="two", previous_response_id=first["id"])
    third = await create(client, input="three", previous_response_id=second["id"])
    assert third["usage"]["input_tokens"] > second["usage"]["input_tokens"] > first["usage"]["input_tokens"]
    await client.delete(f"/v1/responses/{second['id']}")
    page = await (await client.get(f"/v1/responses/{third['id']}/input_items?order=asc")).get_json()
    assert [(i["role"], i["content"][0]["text"]) for i in page["data"]] == [
        ("user", "one"), ("assistant", REPLY), ("user", "two"), ("assistant", REPLY), ("user", "three")]
    fourth = await create(client, input="four", previous_response_id=third["id"])
    assert fourth["status"] == "completed"


async def test_input_items_pages(client):
    items = [{"id": f"msg_{n}", "role": "user", "content": str(n)} for n in range(5)]
    r = await create(client, input=items)

    async def page(query: str) -> dict:
        resp = await client.get(f"/v1/responses/{r['id']}/input_items{query}")
        body = await resp.get_json()
        assert resp.status_code == 200, body
        return body

    newest = await page("?limit=2")
    assert newest["object"] == "list" and [i["id"] for i in newest["data"]] == ["msg_4", "msg_3"]
    assert (newest["first_id"], newest["last_id"], newest["has_more"]) == ("msg_4", "msg_3", True)
    rest = await page("?limit=10&after=msg_3")
    assert [i["id"] for i in rest["data"]] == ["msg_2", "msg_1", "msg_0"] and rest["has_more"] is False
    oldest = await page("?order=asc&limit=2&after=msg_1")
    assert [i["id"] for i in oldest["data"]] == ["msg_2", "msg_3"] and oldest["has_more"] is True
    assert [i["id"] for i in (await page("?order=asc&before=msg_2"))["data"]] == ["msg_0", "msg_1"]
    for query, param in (("?after=msg_9", "after"), ("?limit=0", "limit"), ("?limit=101", "limit"),
                         ("?order=sideways", "order")):
        bad = await client.get(f"/v1/responses/{r['id']}/input_items{query}")
        assert bad.status_code == 400, query
        assert_error(await bad.get_json(), param=param)


async def test_input_tokens(client):
    r = await create(client, input="Count me.")
    count = await client.post("/v1/responses/input_tokens", json={"model": "tiny", "input": "Count me."})
    assert await count.get_json() == {"object": "response.input_tokens", "input_tokens": r["usage"]["input_tokens"]}
    default = await client.post("/v1/responses/input_tokens", json={"input": "Count me."})  # the default model
    assert (await default.get_json())["input_tokens"] == r["usage"]["input_tokens"]
    more = await client.post("/v1/responses/input_tokens", json={"input": "And me.", "previous_response_id": r["id"]})
    assert (await more.get_json())["input_tokens"] > r["usage"]["input_tokens"] + len(REPLY) // 4  # and the answer
    tools = await client.post("/v1/responses/input_tokens", json={"input": "Count me.", "tools": [WEATHER]})
    assert (await tools.get_json())["input_tokens"] > r["usage"]["input_tokens"]


async def test_retention(client, fake_core):
    r = await create(client, input="hi")
    now = time.time()
    assert await fake_core.responses.prune(now + 29 * 86400) == 0
    assert (await client.get(f"/v1/responses/{r['id']}")).status_code == 200
    fake_core.config.responses.keep_days = 0  # forever
    assert await fake_core.responses.prune(now + 3650 * 86400) == 0
    fake_core.config.responses.keep_days = 30
    assert await fake_core.history.prune(now + 31 * 86400) >= 1  # the hourly job prunes responses too
    assert (await client.get(f"/v1/responses/{r['id']}")).status_code == 404


async def test_the_routes_are_in_the_openapi_document(client):
    spec = await (await client.get("/openapi.json")).get_json()
    paths = spec["paths"]
    assert set(paths["/v1/responses"]) == {"post"}
    assert "text/event-stream" in paths["/v1/responses"]["post"]["responses"]["200"]["content"]
    assert set(paths["/v1/responses/input_tokens"]) == {"post"}
    assert set(paths["/v1/responses/resp_{response_key}"]) == {"get", "delete"}
    assert set(paths["/v1/responses/resp_{response_key}/input_items"]) == {"get"}
    assert all(op["x-llmd-auth"] == "inference" for p, item in paths.items() if p.startswith("/v1/responses")
               for op in item.values())


# -- bad input names its field ---------------------------------------------------------------------

BAD = [
    ({"input": []}, "input"),
    ({"input": 5}, "input"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user"}]}, "input[0].content"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
    ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0].type"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "not json"}]},
     "input[0].arguments"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]}, "input[0].arguments"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call", "call_id": "", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}, "input[0].output"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [WEATHER, {"type": "file_search", "vector_store_ids": []}]}, "tools[1].type"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tools": [{"type": "function", "name": "bad name!"}]}, "tools[0].name"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"type": "array"}}]}, "tools[0].parameters"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].name"),
    ({"tools": "get_weather"}, "tools"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "other"}}, "tool_choice.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "file_search"}}, "tool_choice.type"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"text": {"verbosity": "low"}}, "text.verbosity"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"temperature": 2.5}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"stream": "yes"}, "stream"),
    ({"store": 1}, "store"),
    ({"metadata": {"k": 1}}, "metadata.k"),
    ({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata"),
    ({"metadata": {"k": "v" * 513}}, "metadata.k"),
    ({"background": True}, "background"),
    ({"truncation": "auto"}, "truncation"),
    ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
    ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
    ({"include": ["message.output_text.logprobs"]}, "include[0]"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"top_logprobs": 5}, "top_logprobs"),
    ({"prompt_cache_retention": "24h"}, "prompt_cache_retention"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"context_management": [{"type": "compaction"}]}, "context_management"),
    ({"model": ""}, "model"),
]


@pytest.mark.parametrize("patch,param", BAD, ids=[p for _, p in BAD])
async def test_bad_input_names_the_field(client, patch, param):
    r = await client.post("/v1/responses", json={"model": "tiny", "input": "hi", **patch})
    body = await r.get_json()
    assert r.status_code == 400, body
    assert_error(body, param=param)


async def test_neutral_values_are_accepted(client):
    r = await create(client, input="hi", background=False, truncation="disabled", include=[
        "reasoning.encrypted_content"], reasoning={"effort": None}, service_tier="auto", top_logprobs=0,
        prompt_cache_retention="in_memory", prompt_cache_key="k", safety_identifier="s", max_tool_calls=3,
        parallel_tool_calls=False, stream_options={"include_obfuscation": True}, text={"verbosity": "medium"},
        prompt=None, conversation=None, context_management=[], stream=False)
    assert r["status"] == "completed" and r["parallel_tool_calls"] is False
    assert (r["prompt_cache_key"], r["safety_identifier"], r["max_tool_calls"]) == ("k", "s", 3)


async def test_the_cores_limits_name_this_apis_fields(client):
    r = await client.post("/v1/responses", json={"model": "tiny", "input": "hi", "max_output_tokens": 1_000_000})
    assert r.status_code == 400
    err = assert_error(await r.get_json(), param="max_output_tokens")
    assert "max_output_tokens" in err["message"] and "max_tokens " not in err["message"]
    r = await client.post("/v1/responses", json={"model": "tiny", "input": "x" * 40_000})
    assert r.status_code == 400
    assert_error(await r.get_json(), param="input", code="context_length_exceeded")


async def test_other_bad_requests(client):
    r = await client.post("/v1/responses", json={"model": "no-such-model", "input": "hi"})
    assert r.status_code == 404
    assert_error(await r.get_json(), code="model_not_found")
    r = await client.post("/v1/responses/input_tokens", json={"input": "hi", "personality": "friendly"})
    assert r.status_code == 400
    assert_error(await r.get_json(), param="personality")
    first = await create(client, input="hi")
    r = await client.get(f"/v1/responses/{first['id']}?stream=true")
    assert r.status_code == 400
    assert_error(await r.get_json(), param="stream")
