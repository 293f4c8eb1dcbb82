"""The OpenAI API's fields beyond tools, on a FakeEngine: n, logprobs, logit_bias, stop, and every other
field the openai SDK can send (accepted by name, or a 400 naming it)."""

from __future__ import annotations

import json

import pytest
from helpers import parse_sse, wait_requests

from llmd.http import create_app

REPLY = "Hello from the fake engine."
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"model": "tiny", "prompt": "Once upon a time"}


@pytest.fixture
def client(fake_core):
    return create_app(fake_core).test_client()


async def json_of(r):
    return json.loads(await r.get_data(as_text=True))


async def post(client, path, body):
    r = await client.post(path, json=body)
    return r.status_code, await json_of(r)


async def chunks_of(client, path, body) -> list[dict]:
    r = await client.post(path, json={**body, "stream": True})
    assert r.status_code == 200, await r.get_data(as_text=True)
    events = parse_sse(await r.get_data(as_text=True))
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def assert_refused(status, body, param):
    assert status == 400, body
    err = body["error"]
    assert err["param"] == param, err
    assert err["type"] == "invalid_request_error"
    assert err["message"].startswith(param.split(".")[0]) or param in err["message"], err


# -- n -----------------------------------------------------------------------------------------

async def test_chat_n_gives_n_choices(client, fake_core):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, "n": 3})
    assert status == 200, body
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    for c in body["choices"]:
        assert c["message"] == {"role": "assistant", "content": REPLY}
        assert c["finish_reason"] == "stop"
        assert c["logprobs"] is None
    usage = body["usage"]
    assert usage["completion_tokens"] == 3 * len(REPLY)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    rows = await wait_requests(fake_core, 1)
    assert len(rows) == 1 and rows[0]["completion_tokens"] == 3 * len(REPLY)


async def test_completion_n_gives_n_choices(client):
    status, body = await post(client, "/v1/completions", {**COMPLETION, "n": 2})
    assert status == 200, body
    assert [(c["index"], c["text"]) for c in body["choices"]] == [(0, REPLY), (1, REPLY)]
    assert body["usage"]["completion_tokens"] == 2 * len(REPLY)


@pytest.mark.parametrize("path,base", [("/v1/chat/completions", CHAT), ("/v1/completions", COMPLETION)])
async def test_streamed_n_with_usage(client, path, base):
    chunks = await chunks_of(client, path, {**base, "n": 3, "stream_options": {"include_usage": True}})
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3 * len(REPLY)
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    roles = []
    for c in chunks[:-1]:
        [choice] = c["choices"]
        i = choice["index"]
        if choice["finish_reason"]:
            assert i not in finishes
            finishes[i] = choice["finish_reason"]
            continue
        assert i not in finishes, "no text after a choice's finish chunk"
        if path.endswith("chat/completions"):
            if "role" in choice["delta"]:
                roles.append(i)
            texts[i] = texts.get(i, "") + (choice["delta"].get("content") or "")
        else:
            texts[i] = texts.get(i, "") + choice["text"]
    assert texts == {0: REPLY, 1: REPLY, 2: REPLY}
    assert finishes == {0: "stop", 1: "stop", 2: "stop"}
    if path.endswith("chat/completions"):
        assert sorted(roles) == [0, 1, 2]


@pytest.mark.parametrize("n", [0, 9, 129, "2"])
async def test_n_out_of_range(client, n):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, "n": n})
    assert_refused(status, body, "n")


async def test_n_above_the_slots_names_them(client):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, "n": 5})
    assert_refused(status, body, "n")
    assert "4" in body["error"]["message"]


# -- logprobs -------------------------------------------------------------------------------------

async def test_chat_logprobs_shape(client):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 2})
    assert status == 200, body
    lp = body["choices"][0]["logprobs"]
    assert set(lp) == {"content", "refusal"} and lp["refusal"] is None
    content = lp["content"]
    assert "".join(t["token"] for t in content) == REPLY
    for t in content:
        assert set(t) == {"token", "logprob", "bytes", "top_logprobs"}
        assert t["logprob"] <= 0
        assert bytes(t["bytes"]).decode() == t["token"]
        assert len(t["top_logprobs"]) == 2
        assert t["top_logprobs"][0]["token"] == t["token"]
        for alt in t["top_logprobs"]:
            assert set(alt) == {"token", "logprob", "bytes"}


async def test_chat_logprobs_without_top(client):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, "logprobs": True})
    assert status == 200
    assert all(t["top_logprobs"] == [] for t in body["choices"][0]["logprobs"]["content"])


async def test_chat_logprobs_false_is_null(client):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, "logprobs": False})
    assert status == 200 and body["choices"][0]["logprobs"] is None


async def test_completion_logprobs_shape(client):
    status, body = await post(client, "/v1/completions", {**COMPLETION, "logprobs": 3})
    assert status == 200, body
    lp = body["choices"][0]["logprobs"]
    assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert "".join(lp["tokens"]) == REPLY
    assert len(lp["token_logprobs"]) == len(lp["tokens"]) == len(lp["top_logprobs"]) == len(lp["text_offset"])
    assert all(p <= 0 for p in lp["token_logprobs"])
    assert lp["text_offset"] == list(range(len(REPLY)))  # one character per fake token
    for tok, top in zip(lp["tokens"], lp["top_logprobs"], strict=True):
        assert isinstance(top, dict) and tok in top and len(top) <= 3


async def test_streamed_chat_logprobs(client):
    chunks = await chunks_of(client, "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 1})
    tokens = []
    for c in chunks:
        [choice] = c["choices"]
        if choice["delta"].get("content"):
            assert choice["logprobs"] is not None
            tokens += choice["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == REPLY
    assert all(len(t["top_logprobs"]) == 1 for t in tokens)


async def test_streamed_completion_logprobs(client):
    chunks = await chunks_of(client, "/v1/completions", {**COMPLETION, "logprobs": 1, "n": 2})
    offsets: dict[int, list[int]] = {0: [], 1: []}
    for c in chunks:
        [choice] = c["choices"]
        if choice["text"]:
            offsets[choice["index"]] += choice["logprobs"]["text_offset"]
    assert offsets == {0: list(range(len(REPLY))), 1: list(range(len(REPLY)))}


@pytest.mark.parametrize("extra,param", [
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": False, "top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ({"logprobs": "yes"}, "logprobs"),
])
async def test_chat_logprobs_refusals(client, extra, param):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, **extra})
    assert_refused(status, body, param)


@pytest.mark.parametrize("value", [6, -1, "x"])
async def test_completion_logprobs_range(client, value):
    status, body = await post(client, "/v1/completions", {**COMPLETION, "logprobs": value})
    assert_refused(status, body, "logprobs")


# -- logit_bias -----------------------------------------------------------------------------------

async def test_logit_bias_reaches_the_engine(client):
    # the fake bans a piece of its reply biased by -100: token 0 is its "H"
    status, body = await post(client, "/v1/chat/completions", {**CHAT, "logit_bias": {"0": -100}})
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == REPLY[1:]
    status, body = await post(client, "/v1/completions", {**COMPLETION, "logit_bias": {"5": 3.5, "7": -1}})
    assert status == 200, body


@pytest.mark.parametrize("bias", [
    {"abc": 1}, {"-1": 1}, {" 5": 1}, {"1.5": 1}, {"": 1}, {"5": 101}, {"5": -100.5},
    {"99999999999": 1}, {"32000": 1}, {"5": "high"}, [1, 2],
    {str(i): 1 for i in range(1025)},
])
async def test_logit_bias_refusals(client, bias):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, "logit_bias": bias})
    assert status == 400, body
    assert body["error"]["param"].split(".")[0] == "logit_bias"


# -- stop ------------------------------------------------------------------------------------------

async def test_openai_takes_four_stop_strings(client):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, "stop": ["x", "y", "z", "fake"]})
    assert status == 200 and body["choices"][0]["message"]["content"] == "Hello from the "
    status, body = await post(client, "/v1/completions", {**COMPLETION, "stop": ["a", "b", "c", "d", "e"]})
    assert_refused(status, body, "stop")
    assert "4" in body["error"]["message"]


async def test_llm_manager_takes_sixteen_stop_strings(client, fake_core):
    dep = fake_core.fleet.get("tiny")
    r = await client.post(f"/api/chat/{dep.id}", json={**CHAT, "stop": [f"s{i}" for i in range(16)]})
    assert r.status_code == 200, await r.get_data(as_text=True)
    r = await client.post(f"/api/chat/{dep.id}", json={**CHAT, "stop": [f"s{i}" for i in range(17)]})
    assert r.status_code == 400


async def test_llm_manager_chat_with_n_and_logprobs(client, fake_core):
    dep = fake_core.fleet.get("tiny")
    r = await client.post(f"/api/chat/{dep.id}", json={**CHAT, "n": 2, "logprobs": True})
    assert r.status_code == 200, await r.get_data(as_text=True)
    data = (await json_of(r))["data"]
    assert [c["index"] for c in data["choices"]] == [0, 1]
    assert all(c["logprobs"]["content"] for c in data["choices"])


# -- every other field the SDK sends ----------------------------------------------------------------

ACCEPTED_CHAT = [
    {"user": "user-1234"},
    {"metadata": {"purpose": "test"}},
    {"store": True},
    {"store": False},
    {"service_tier": "auto"},
    {"service_tier": "default"},
    {"service_tier": "flex"},
    {"prediction": {"type": "content", "content": "Hello"}},
    {"prompt_cache_key": "k1"},
    {"prompt_cache_retention": "24h"},
    {"prompt_cache_options": {"mode": "implicit", "ttl": "30m"}},
    {"safety_identifier": "abc"},
    {"modalities": ["text"]},
    {"reasoning_effort": "none"},
    {"verbosity": "medium"},
    {"seed": 5},
    {"max_completion_tokens": 8},
    {"stream_options": {"include_usage": False, "include_obfuscation": False}},
    {"audio": None, "functions": None, "function_call": None, "web_search_options": None},
]


@pytest.mark.parametrize("extra", ACCEPTED_CHAT, ids=lambda e: ",".join(e))
async def test_accepted_chat_fields(client, extra):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, **extra})
    assert status == 200, body


REFUSED_CHAT = [
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"reasoning_effort": "high"}, "reasoning_effort"),
    ({"verbosity": "low"}, "verbosity"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"moderation": {"model": "omni-moderation-latest"}}, "moderation"),
    ({"functions": [{"name": "f", "parameters": {"type": "object"}}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"service_tier": "turbo"}, "service_tier"),
    ({"store": "maybe"}, "store"),
    ({"metadata": {"k": 1}}, "metadata.k"),
    ({"user": 5}, "user"),
]


@pytest.mark.parametrize("extra,param", REFUSED_CHAT, ids=lambda e: e if isinstance(e, str) else ",".join(e))
async def test_refused_chat_fields(client, extra, param):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, **extra})
    assert_refused(status, body, param)


async def test_functions_point_to_tools(client):
    status, body = await post(client, "/v1/chat/completions", {**CHAT, "functions": [{"name": "f"}]})
    assert status == 400 and "tools" in body["error"]["message"]


@pytest.mark.parametrize("extra", [{"user": "u"}, {"echo": False}, {"suffix": ""}, {"best_of": 1},
                                   {"best_of": 2, "n": 2}, {"seed": 3}])
async def test_accepted_completion_fields(client, extra):
    status, body = await post(client, "/v1/completions", {**COMPLETION, **extra})
    assert status == 200, body


@pytest.mark.parametrize("extra,param", [
    ({"echo": True}, "echo"),
    ({"suffix": "the end"}, "suffix"),
    ({"best_of": 3}, "best_of"),
    ({"best_of": 2, "n": 3}, "best_of"),
])
async def test_refused_completion_fields(client, extra, param):
    status, body = await post(client, "/v1/completions", {**COMPLETION, **extra})
    assert_refused(status, body, param)


def test_every_sdk_field_is_declared():
    """Each field the installed openai SDK can send is a field of our schema (accepted or refused by name)."""
    import typing

    from openai.types import completion_create_params as cc
    from openai.types.chat import completion_create_params as ccc

    from llmd.http.openai_schemas import ChatCompletionRequest, CompletionRequest

    chat_fields = set(typing.get_type_hints(ccc.CompletionCreateParamsBase)) | {"stream"}
    ours = set(ChatCompletionRequest.model_fields)
    assert chat_fields - ours == set(), "declare these chat fields (accept or refuse them by name)"
    completion_fields = set(typing.get_type_hints(cc.CompletionCreateParamsBase)) | {"stream"}
    assert completion_fields - set(CompletionRequest.model_fields) == set()
