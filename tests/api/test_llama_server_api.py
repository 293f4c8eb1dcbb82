"""llama.cpp's server tokenizer routes on a FakeEngine: shapes, the template, errors in llama-server's envelope."""

from __future__ import annotations

import pytest

from llmd.http import create_app


@pytest.fixture
def client(fake_core):
    return create_app(fake_core).test_client()


async def test_tokenize_and_detokenize(client):
    r = await client.post("/tokenize", json={"content": "abcdefgh"})
    body = await r.get_json()
    assert r.status_code == 200 and isinstance(body["tokens"], list) and body["tokens"], body
    r = await client.post("/tokenize", json={"content": "abcdefgh", "with_pieces": True})
    pieces = (await r.get_json())["tokens"]
    assert [p["id"] for p in pieces] == body["tokens"] and all("piece" in p for p in pieces)
    r = await client.post("/detokenize", json={"tokens": []})
    assert r.status_code == 200 and (await r.get_json()) == {"content": ""}


async def test_apply_template_renders_the_chat_and_its_tools(client):
    r = await client.post("/apply-template", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    assert (await r.get_json())["prompt"] == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    r = await client.post("/apply-template", json={"messages": [{"role": "user", "content": "hi"}], "tools": tools})
    prompt = (await r.get_json())["prompt"]
    assert prompt.startswith("<|im_start|>system\n") and "lookup" in prompt


@pytest.mark.parametrize("path, body, field", [
    ("/tokenize", {}, "content"),
    ("/tokenize", {"content": 5}, "content"),
    ("/detokenize", {"tokens": ["a"]}, "tokens"),
    ("/detokenize", {"tokens": [-1]}, "tokens[0]"),
    ("/apply-template", {"messages": []}, "messages"),
    ("/tokenize", {"content": "x", "model": "nope"}, "model"),
])
async def test_bad_input_is_a_400_in_llama_servers_envelope(client, path, body, field):
    r = await client.post(path, json=body)
    out = await r.get_json()
    assert r.status_code in (400, 404), out
    assert set(out) == {"error"} and out["error"]["code"] == r.status_code and field in out["error"]["message"]


async def test_other_methods_get_a_405_in_this_apis_envelope(client):
    r = await client.get("/tokenize")
    assert r.status_code == 405 and (await r.get_json())["error"]["code"] == 405
