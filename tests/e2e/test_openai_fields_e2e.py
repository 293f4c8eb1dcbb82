"""n, logprobs, logit_bias and seeds with the official openai SDK against the real daemon and model."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(daemon):
    return openai.OpenAI(base_url=f"{daemon.url}/v1", api_key="unused", max_retries=0, timeout=120)


def evaluated(daemon) -> int:
    """The default deployment's prompt tokens evaluated so far (its scheduler's figure)."""
    body = httpx.get(f"{daemon.url}/llmd/v1/status", timeout=10).json()
    [dep] = [d for d in body["health"]["deployments"] if d["model"] == "smollm2-135m-instruct"]
    return dep["scheduler"]["prompt_tokens_evaluated"]


def token_id(text: str) -> int:
    """The bundled model's id of a token, from its text (one token)."""
    from llama_cpp import Llama

    from llmd.core.registry import find_bundled_gguf

    vocab = Llama(model_path=str(find_bundled_gguf()[0]), vocab_only=True, verbose=False)
    ids = vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    assert len(ids) == 1, (text, ids)
    return ids[0]


def test_n_gives_different_choices_from_one_prompt_evaluation(client, daemon):
    # A prompt no earlier request shares beyond the chat template's first tokens: its evaluation is counted.
    nonce = uuid.uuid4().hex
    messages = [{"role": "user", "content": f"Request {nonce}. Invent a short name for a cat, then explain it."}]
    before = evaluated(daemon)
    r = client.chat.completions.create(model="default", messages=messages, n=3, temperature=1.0, max_tokens=24)
    after = evaluated(daemon)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert all(t.strip() for t in texts)
    assert len(set(texts)) >= 2, texts
    assert all(c.finish_reason in ("stop", "length") for c in r.choices)
    assert r.usage.completion_tokens <= 3 * 24 and r.usage.completion_tokens >= 3
    # the prompt once (less what the prompt cache held), not three times
    assert 0 < after - before <= r.usage.prompt_tokens, (after - before, r.usage.prompt_tokens)


def test_greedy_logprobs(client):
    r = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16, temperature=0, logprobs=True, top_logprobs=5, extra_body={"repeat_penalty": 1.0})
    content = r.choices[0].logprobs.content
    assert content and len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token
        assert len(t.top_logprobs) == 5
        probs = [a.logprob for a in t.top_logprobs]
        assert probs == sorted(probs, reverse=True)
        assert all(p <= 0 for p in probs)
        # greedy: the chosen token is the most likely one
        assert t.top_logprobs[0].token == t.token
        assert abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6
    # the most likely token of the first position is fairly sure of itself
    assert content[0].logprob > -5


def test_completion_logprobs(client):
    r = client.completions.create(model="default", prompt="1, 2, 3, 4,", max_tokens=6, temperature=0, logprobs=3,
                                  extra_body={"repeat_penalty": 1.0})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) > 0
    assert "".join(lp.tokens) == r.choices[0].text
    for tok, p, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert p <= 0 and 1 <= len(top) <= 3
        assert max(top, key=top.get) == tok


def test_streamed_n_with_usage(client):
    stream = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Name a colour."}], n=2, temperature=1.0,
        max_tokens=12, stream=True, stream_options={"include_usage": True})
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason:
                finishes[c.index] = c.finish_reason
    assert set(texts) == {0, 1} and all(t.strip() for t in texts.values())
    assert set(finishes) == {0, 1}
    assert usage is not None and 2 <= usage.completion_tokens <= 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_logit_bias_bans_the_greedy_first_token(client):
    kw = {"model": "default", "messages": [{"role": "user", "content": "What is the capital of France?"}],
          "max_tokens": 8, "temperature": 0, "extra_body": {"repeat_penalty": 1.0}}
    first = client.chat.completions.create(**kw, logprobs=True).choices[0].logprobs.content[0].token
    banned = token_id(first)
    r = client.chat.completions.create(**kw, logprobs=True, logit_bias={str(banned): -100})
    assert r.choices[0].logprobs.content[0].token != first
    # a token id outside the vocabulary is refused by name
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**kw, logit_bias={"999999999": 5})
    assert e.value.body["param"] == "logit_bias"


def test_same_seed_same_choices(client):
    kw = {"model": "default", "messages": [{"role": "user", "content": "Invent a name for a dragon."}],
          "max_tokens": 16, "temperature": 1.0, "seed": 777, "n": 2}
    a = [c.message.content for c in client.chat.completions.create(**kw).choices]
    b = [c.message.content for c in client.chat.completions.create(**kw).choices]
    assert a == b


def test_fields_llmd_cannot_honour_are_refused_by_name(client):
    base = {"model": "default", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    for kw, param in (({"modalities": ["text", "audio"]}, "modalities"),
                      ({"functions": [{"name": "f", "parameters": {"type": "object"}}]}, "functions"),
                      ({"reasoning_effort": "high"}, "reasoning_effort"),
                      ({"stop": ["a", "b", "c", "d", "e"]}, "stop")):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(**base, **kw)
        assert e.value.body["param"] == param
    # and the neutral values of the others pass
    r = client.chat.completions.create(**base, user="u1", metadata={"k": "v"}, store=False, service_tier="auto",
                                       modalities=["text"], reasoning_effort="none", prompt_cache_key="k",
                                       safety_identifier="s")
    assert r.choices[0].message.content is not None


def test_greedy_choices_equal_the_single_answer(client):
    """Under temperature 0 every choice is the same greedy answer: the copied KV caches hold the leader's prompt.

    (Only its start is compared with a lone request's: llama.cpp's kernels differ with the batch's size, so one
    stream and three in a batch may part ways at a near tie many tokens in.)"""
    kw = {"model": "default", "messages": [{"role": "user", "content": f"Describe the sea. ({uuid.uuid4().hex})"}],
          "max_tokens": 24, "temperature": 0, "extra_body": {"repeat_penalty": 1.0}}
    one = client.chat.completions.create(**kw).choices[0].message.content
    many = [c.message.content for c in client.chat.completions.create(**kw, n=3).choices]
    assert many == [many[0]] * 3
    assert many[0].split()[:3] == one.split()[:3]


@pytest.mark.parametrize("kv_unified", [False, True])
async def test_choices_share_the_prompt_in_either_kv_layout(tmp_path, kv_unified):
    """n > 1 in process, with per-sequence KV buffers (the default: the copy is a whole buffer) and with one
    unified buffer (the copy shares cells): the greedy choices are the same answer, which starts as a lone
    request's does (see above for why only its start)."""
    from helpers import make_config

    from llmd.core import Core
    from llmd.core.engine.llama_cpp import LlamaCppEngine
    from llmd.core.types import ChatMessage, GenerateRequest, SamplingParams
    from llmd.store import Store

    cfg = make_config(tmp_path, **{"models.discover_bundled": True, "models.default": "smollm2-135m-instruct",
                                   "engine.n_ctx": 512, "engine.parallel": 3, "engine.kv_unified": kv_unified})
    store = Store(cfg.db_path)
    await store.open()
    core = Core(cfg, store, LlamaCppEngine())
    try:
        await core.start()
        dep = core.fleet.default()
        await dep.wait_loaded(120)
        params = SamplingParams(max_tokens=20, temperature=0, repeat_penalty=1.0)
        ask = (ChatMessage("user", "Name three rivers."),)
        one = await (await core.inference.generate(GenerateRequest(messages=ask, params=params))).collect()
        # another prompt, so that the leader's cache does not already hold this one in every slot
        ask2 = (ChatMessage("user", "Name three mountains."),)
        gen = await core.inference.generate(GenerateRequest(messages=ask2, params=params, n=3))
        await gen.collect()
        lone = await (await core.inference.generate(GenerateRequest(messages=ask2, params=params))).collect()
        assert one.text
        texts = [r.text for r in gen.results]
        assert texts == [texts[0]] * 3
        assert texts[0].split()[:3] == lone.text.split()[:3]
    finally:
        await core.shutdown()
        await store.close()
