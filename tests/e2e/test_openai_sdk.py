"""The official openai SDK and LangChain against the real daemon and model."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(daemon):
    return openai.OpenAI(base_url=f"{daemon.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_list(client):
    ids = [m.id for m in client.models.list().data]
    assert "smollm2-135m-instruct" in ids
    assert client.models.retrieve("default").id == "smollm2-135m-instruct"


def test_chat_non_stream(client):
    r = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24, temperature=0, seed=1)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content.strip()
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5
    assert 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=20, temperature=0, stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    assert len(pieces) > 1, "the answer must arrive in several chunks"
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens > 0


def test_max_tokens_gives_length(client):
    r = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_completion_tokens=5, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5


def test_seed_makes_sampling_repeatable(client):
    kw = {"model": "default", "messages": [{"role": "user", "content": "Invent a name for a cat."}],
          "max_tokens": 16, "temperature": 1.2, "seed": 1234}
    a = client.chat.completions.create(**kw).choices[0].message.content
    b = client.chat.completions.create(**kw).choices[0].message.content
    assert a == b


def test_stop_string(client):
    r = client.completions.create(model="default", prompt="1, 2, 3, 4, 5, 6,", max_tokens=30,
                                  temperature=0, stop=[" 9"])
    assert " 9" not in r.choices[0].text
    assert r.choices[0].finish_reason == "stop"


def test_completions_stream(client):
    text = ""
    for chunk in client.completions.create(model="default", prompt="The sky is", max_tokens=12,
                                           temperature=0, stream=True):
        text += chunk.choices[0].text
    assert text.strip()


def test_embeddings(client):
    r = client.embeddings.create(model="default", input=["hello world", "привет мир"])
    assert len(r.data) == 2
    v = r.data[0].embedding
    assert len(v) > 16
    assert abs(sum(x * x for x in v) - 1.0) < 1e-3
    assert r.usage.prompt_tokens > 0


def test_sdk_errors(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}],
                                       n=9)  # above limits.max_n
    assert e.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}],
                                       temperature=3)


def test_langchain_chat_openai_streams(daemon):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=f"{daemon.url}/v1", api_key="unused", model="default",
                      max_tokens=16, temperature=0, max_retries=0)
    chunks = [c.content for c in chat.stream("Say hello.")]
    assert len([c for c in chunks if c]) > 1
    assert "".join(chunks).strip()
    assert chat.invoke("Say hello.").content.strip()


def test_response_format_json_object_gives_json(client):
    import json as _json

    r = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": 'Give a JSON object with a "color" key for the sky.'}],
        response_format={"type": "json_object"}, max_tokens=400, temperature=0)
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    assert isinstance(_json.loads(r.choices[0].message.content), dict)


def test_response_format_json_schema_is_followed(client):
    import json as _json

    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Invent a person."}], max_tokens=80, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    data = _json.loads(r.choices[0].message.content)
    assert set(data) == {"name", "age"} and isinstance(data["age"], int)


def test_gbnf_grammar_extension(client):
    r = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Is the sky blue?"}], max_tokens=8,
        extra_body={"grammar": 'root ::= "yes" | "no"'})
    assert r.choices[0].message.content in ("yes", "no")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"grammar": "root ::= ("})
    assert e.value.body["param"] == "grammar"
