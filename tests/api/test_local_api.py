"""Seed 003 (LLaMA Local): /generate, /health, /model-info on a FakeEngine."""

from __future__ import annotations

import json

import pytest
from helpers import parse_sse, wait_requests

from llmd import __version__
from llmd.core.engine.fake import FakeEngine
from llmd.http import create_app

REPLY = "Hello from the fake engine."


@pytest.fixture
def client(fake_core):
    return create_app(fake_core).test_client()


async def json_of(r):
    return json.loads(await r.get_data(as_text=True))


def seed_client_tokens(body: str) -> list[str]:
    """What the seed document's own Python client does with the stream, line by line."""
    tokens = []
    for line in body.split("\n"):
        if line.startswith("data: "):
            token = line[6:]
            if token == "[DONE]":
                break
            if token.startswith("[ERROR"):
                raise RuntimeError(token)
            tokens.append(token)
    return tokens


def assert_detail(body, *needles):
    assert set(body) == {"detail"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    for n in needles:
        assert n in body["detail"], (n, body["detail"])
    return body["detail"]


# -- /generate ---------------------------------------------------------------------

async def test_generate_streams_by_default(client, fake_core):
    r = await client.post("/generate", json={"prompt": "Что такое Python?"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["Cache-Control"] == "no-cache"
    body = await r.get_data(as_text=True)
    events = parse_sse(body)
    assert events[-1] == "[DONE]"
    assert "".join(events[:-1]) == REPLY
    assert len(events) - 1 == len(REPLY)  # one event per token
    assert "".join(seed_client_tokens(body)) == REPLY
    rows = await wait_requests(fake_core, 1)
    assert (rows[0]["dialect"], rows[0]["endpoint"], rows[0]["status"]) == ("llama_local", "/generate", "ok")


async def test_generate_stream_true_explicitly(client):
    r = await client.post("/generate", json={"prompt": "x", "stream": True, "max_tokens": 5})
    assert parse_sse(await r.get_data(as_text=True)) == ["H", "e", "l", "l", "o", "[DONE]"]


async def test_generate_non_stream(client):
    r = await client.post("/generate", json={"prompt": "Что такое Python?", "stream": False,
                                             "temperature": 0.7, "max_tokens": 200})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert await json_of(r) == {"text": REPLY, "prompt": "Что такое Python?"}


async def test_generate_accepts_every_documented_field(client):
    r = await client.post("/generate", json={
        "prompt": "x", "stream": False, "temperature": 0, "max_tokens": 4096 - 300, "top_p": 1,
        "top_k": 100, "repeat_penalty": 2.0})
    # max_tokens in range but past this tiny model's context: a 400 naming it, never a 500
    assert r.status_code == 400
    assert_detail(await json_of(r), "max_tokens")
    r = await client.post("/generate", json={
        "prompt": "x", "stream": False, "temperature": 2, "max_tokens": 1, "top_p": 0,
        "top_k": 1, "repeat_penalty": 1.0})
    assert r.status_code == 200
    assert (await json_of(r))["text"] == "H"


async def test_newline_in_text_becomes_several_data_lines(core_factory):
    core = await core_factory(FakeEngine(reply="line one\nline two\n\nend"))
    c = create_app(core).test_client()
    r = await c.post("/generate", json={"prompt": "x"})
    body = await r.get_data(as_text=True)
    # no raw newline inside a data line: every line of the body is a data line or blank
    for line in body.split("\n"):
        assert line == "" or line.startswith("data: ") or line == "data:", repr(line)
    events = parse_sse(body)
    assert events[-1] == "[DONE]"
    assert "".join(events[:-1]) == "line one\nline two\n\nend"
    assert "data: \ndata: \n\n" in body  # the "\n" token: two empty data lines make one newline


async def test_unicode_stream(core_factory):
    reply = "Привет! 你好。"
    core = await core_factory(FakeEngine(reply=reply, split_bytes=True))
    c = create_app(core).test_client()
    r = await c.post("/generate", json={"prompt": "x"})
    raw = await r.get_data()
    events = parse_sse(raw.decode("utf-8"))
    assert all("\ufffd" not in e for e in events)
    assert "".join(events[:-1]) == reply


async def test_raw_prompt_skips_the_chat_template(client, fake_core):
    prompt = "x" * 40
    await client.post("/generate", json={"prompt": prompt, "stream": False, "raw": True})
    await client.post("/generate", json={"prompt": prompt, "stream": False})
    rows = await wait_requests(fake_core, 2)
    templated, raw = rows  # newest first
    assert raw["prompt_tokens"] == 10
    assert templated["prompt_tokens"] > 10


async def test_generate_model_extension(client):
    r = await client.post("/generate", json={"prompt": "x", "stream": False, "model": "default"})
    assert r.status_code == 200
    r = await client.post("/generate", json={"prompt": "x", "stream": False, "model": "nope"})
    assert r.status_code == 404
    assert_detail(await json_of(r), "nope")


@pytest.mark.parametrize("field,value", [
    ("temperature", -0.1), ("temperature", 2.01),
    ("max_tokens", 0), ("max_tokens", 4097),
    ("top_p", -0.01), ("top_p", 1.01),
    ("top_k", 0), ("top_k", 101),
    ("repeat_penalty", 0.99), ("repeat_penalty", 2.01),
    ("prompt", ""),
])
async def test_out_of_range_is_400_naming_the_field(client, field, value):
    body = {"prompt": "x", "stream": False, field: value}
    r = await client.post("/generate", json=body)
    assert r.status_code == 400
    detail = assert_detail(await json_of(r), field)
    assert detail.startswith(field)


@pytest.mark.parametrize("body,field", [
    ({}, "prompt"),
    ({"stream": False}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "max_tokens": 1.5}, "max_tokens"),
    ({"prompt": "x", "max_tokens": "10"}, "max_tokens"),
    ({"prompt": "x", "stream": "yes"}, "stream"),
])
async def test_missing_or_wrong_type_is_400(client, body, field):
    r = await client.post("/generate", json=body)
    assert r.status_code == 400
    assert_detail(await json_of(r), field)


@pytest.mark.parametrize("data", [b"", b"not json", b"[1, 2]", b'"prompt"', b"{"])
async def test_body_not_a_json_object(client, data):
    r = await client.post("/generate", data=data, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert_detail(await json_of(r), "JSON")


async def test_engine_failure_mid_stream(core_factory):
    core = await core_factory(FakeEngine(fail_after=4))
    c = create_app(core).test_client()
    r = await c.post("/generate", json={"prompt": "x"})
    assert r.status_code == 200  # the stream had started
    body = await r.get_data(as_text=True)
    assert "Traceback" not in body
    events = parse_sse(body)
    assert "".join(events[:-1]) == "Hell"
    assert events[-1].startswith("[ERROR")
    assert events[-1].endswith("]")
    assert "engine_error" in events[-1]
    with pytest.raises(RuntimeError, match=r"^\[ERROR"):
        seed_client_tokens(body)


async def test_engine_failure_non_stream(core_factory):
    core = await core_factory(FakeEngine(fail_after=4))
    c = create_app(core).test_client()
    r = await c.post("/generate", json={"prompt": "x", "stream": False})
    assert r.status_code == 500
    text = await r.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    assert_detail(json.loads(text))


# -- /health -----------------------------------------------------------------------

async def test_health(client):
    r = await client.get("/health")
    assert r.status_code == 200
    body = await json_of(r)
    assert body["status"] == "ok"
    assert body["model_loaded"] is True
    assert body["service"] == "llmd"
    assert body["version"] == __version__
    assert body["details"]["store"] == "ok"
    assert body["details"]["default_model"] == "tiny"


async def test_health_failed_load_is_still_200(core_factory):
    core = await core_factory(FakeEngine(fail_load=True))
    c = create_app(core).test_client()
    r = await c.get("/health")
    assert r.status_code == 200
    body = await json_of(r)
    assert body["status"] == "error" and body["model_loaded"] is False


async def test_health_after_shutdown(client, fake_core):
    await fake_core.shutdown()
    r = await client.get("/health")
    assert r.status_code == 200
    assert (await json_of(r))["status"] == "error"


# -- /model-info -------------------------------------------------------------------

async def test_model_info(client, fake_core, tiny_gguf):
    r = await client.get("/model-info")
    assert r.status_code == 200
    body = await json_of(r)
    s = fake_core.config.sampling
    assert body["path"] == str(tiny_gguf)
    assert body["loaded"] is True
    assert body["n_ctx"] == 256
    assert body["n_gpu_layers"] == 0
    assert body["temperature"] == s.temperature
    assert body["top_p"] == s.top_p
    assert body["top_k"] == s.top_k
    assert body["repeat_penalty"] == s.repeat_penalty
    assert body["max_tokens"] == s.max_tokens
    assert body["stream"] is True
    assert body["model"] == "tiny"
    assert body["architecture"] == "llama"
    assert body["quantization"] == "Q4_1"
    assert body["device"] == "cpu"


# -- before the model is loaded ----------------------------------------------------

async def test_before_the_model_is_loaded(core_factory):
    engine = FakeEngine()
    engine.load_gate.clear()
    core = await core_factory(engine, wait=False)
    c = create_app(core).test_client()

    r = await c.get("/health")
    assert r.status_code == 200
    body = await json_of(r)
    assert body["status"] == "model_not_loaded"
    assert body["model_loaded"] is False

    r = await c.post("/generate", json={"prompt": "x"})
    assert r.status_code == 503
    assert "Retry-After" in r.headers
    assert_detail(await json_of(r), "not loaded")

    r = await c.post("/generate", json={"prompt": "x", "stream": False})
    assert r.status_code == 503

    r = await c.get("/model-info")
    assert r.status_code == 503
    assert_detail(await json_of(r), "not loaded")

    engine.load_gate.set()
    await core.fleet.get("tiny").wait_loaded(5)
    assert (await json_of(await c.get("/health")))["status"] == "ok"
    assert (await c.get("/model-info")).status_code == 200
    r = await c.post("/generate", json={"prompt": "x", "stream": False})
    assert (await json_of(r))["text"] == REPLY


async def test_no_default_model_registered(core_factory):
    core = await core_factory(register=False)
    c = create_app(core).test_client()
    body = await json_of(await c.get("/health"))
    assert body["status"] == "model_not_loaded" and body["model_loaded"] is False
    r = await c.get("/model-info")
    assert r.status_code == 404
    assert_detail(await json_of(r), "tiny")


# -- envelope for paths nobody owns --------------------------------------------------

async def test_unknown_root_path_uses_detail(client):
    r = await client.get("/no/such/path")
    assert r.status_code == 404
    assert_detail(await json_of(r), "/no/such/path")


async def test_wrong_method(client):
    r = await client.get("/generate")
    assert r.status_code == 405
    assert_detail(await json_of(r), "GET")
    r = await client.post("/health", json={})
    assert r.status_code == 405
    assert_detail(await json_of(r))


def test_sse_helper_splits_lines():
    from llmd.http.sse import sse

    assert sse("plain") == "data: plain\n\n"
    assert sse("a\nb") == "data: a\ndata: b\n\n"
    assert sse("a\r\nb\rc") == "data: a\ndata: b\ndata: c\n\n"
    assert sse("\n") == "data: \ndata: \n\n"
    assert parse_sse(sse("x\ny") + sse("[DONE]")) == ["x\ny", "[DONE]"]
