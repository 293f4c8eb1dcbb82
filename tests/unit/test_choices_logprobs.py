"""n > 1 choices, log-probabilities and logit bias in the core, on the FakeEngine (the real scheduler)."""

from __future__ import annotations

import asyncio

import pytest
from helpers import wait_requests

from llmd.core.engine.fake import FakeEngine
from llmd.core.types import FinishReason, GenerateRequest, SamplingParams, TokenEvent
from llmd.errors import ValidationError

REPLY = "Hello from the fake engine."


def req(prompt: str = "a prompt of some length", *, n: int = 1, **params) -> GenerateRequest:
    if "stop" in params:
        params["stop"] = tuple(params["stop"])
    return GenerateRequest(prompt=prompt, params=SamplingParams(**params), n=n)


def deployment(core):
    return core.fleet.get("tiny")


async def events_of(gen) -> list[TokenEvent]:
    return [e async for e in gen]


async def test_n_choices_share_one_prompt_evaluation(fake_core):
    dep = deployment(fake_core)
    before = dep.scheduler.stats()["prompt_tokens_evaluated"]
    prompt = "tell me something " * 10
    n_prompt = len(dep.loaded.tokenize(prompt))
    gen = await fake_core.inference.generate(req(prompt, n=3))
    events = await events_of(gen)
    assert gen.n == 3
    assert {e.index for e in events} == {0, 1, 2}
    for i in range(3):
        assert "".join(e.text for e in events if e.index == i) == REPLY
    assert [r.index for r in gen.results] == [0, 1, 2]
    assert all(r.text == REPLY and r.finish_reason is FinishReason.STOP for r in gen.results)
    # the prompt once, the completions of all
    assert gen.result.usage.prompt_tokens == n_prompt
    assert gen.result.usage.completion_tokens == sum(r.usage.completion_tokens for r in gen.results)
    assert gen.result.usage.completion_tokens == 3 * len(REPLY)
    assert dep.scheduler.stats()["prompt_tokens_evaluated"] - before == n_prompt
    assert len(dep.loaded.copies) == 2
    assert dep.loaded.freed_samplers >= 3
    assert not dep._running and not dep._queue
    # one request in the log, with every choice's tokens
    rows = await wait_requests(fake_core, 1)
    assert len(rows) == 1
    assert rows[0]["completion_tokens"] == 3 * len(REPLY)


async def test_n_1_has_no_group(fake_core):
    gen = await fake_core.inference.generate(req())
    await gen.collect()
    assert gen.n == 1 and gen.results is None
    assert gen.job.group is None
    assert deployment(fake_core).loaded.copies == []


async def test_n_choices_get_their_own_seeds(fake_core):
    gen = await fake_core.inference.generate(req(n=3, seed=41))
    await gen.collect()
    assert [j.params.seed for j in gen.job.group] == [41, 42, 43]


async def test_n_above_the_slots_is_a_400(core_factory):
    core = await core_factory(**{"engine.parallel": 2})
    with pytest.raises(ValidationError) as e:
        await core.inference.generate(req(n=3))
    assert e.value.field == "n"
    assert "2" in e.value.message


async def test_n_above_max_n_is_a_400(core_factory):
    core = await core_factory(**{"limits.max_n": 2})
    with pytest.raises(ValidationError) as e:
        await core.inference.generate(req(n=3))
    assert e.value.field == "n"
    assert "limits.max_n" in e.value.message


async def test_a_group_waits_for_enough_free_slots(core_factory):
    engine = FakeEngine(delay_s=0.005)
    core = await core_factory(engine, **{"engine.parallel": 3})
    lone = await core.inference.generate(req(max_tokens=20, ignore_eos=True))
    group = await core.inference.generate(req(n=3, max_tokens=3))
    a, b = await asyncio.gather(lone.collect(), group.collect())
    assert a.usage.completion_tokens == 20
    assert [r.text for r in group.results] == [REPLY[:3]] * 3


async def test_cancelling_cancels_every_choice(core_factory):
    engine = FakeEngine(delay_s=0.01)
    core = await core_factory(engine)
    dep = deployment(core)
    gen = await core.inference.generate(req(n=3, ignore_eos=True, max_tokens=200))
    it = gen.__aiter__()
    await asyncio.wait_for(it.__anext__(), 5)
    gen.cancel()
    async for _ in it:
        pass
    assert all(r.finish_reason is FinishReason.CANCELLED for r in gen.results)
    for _ in range(200):
        if not dep._running:
            break
        await asyncio.sleep(0.01)
    assert not dep._running
    assert dep.scheduler.stats()["active_slots"] == 0


async def test_cancelling_a_queued_group(core_factory):
    engine = FakeEngine(delay_s=0.01)
    core = await core_factory(engine, **{"engine.parallel": 2})
    busy = await core.inference.generate(req(ignore_eos=True, max_tokens=200))
    queued = await core.inference.generate(req(n=2))
    queued.cancel()
    result = await queued.collect()
    assert result.finish_reason is FinishReason.CANCELLED
    assert len(queued.results) == 2
    busy.cancel()
    await busy.collect()


async def test_logprobs_travel_with_their_text(fake_core):
    gen = await fake_core.inference.generate(req(logprobs=3))
    events = await events_of(gen)
    tokens = [lp for e in events for lp in e.logprobs]
    assert len(tokens) == len(REPLY) == gen.result.usage.completion_tokens
    assert gen.result.logprobs == tuple(tokens)
    assert "".join(lp.token for lp in tokens) == REPLY
    for lp in tokens:
        assert lp.logprob <= 0
        assert len(lp.top) == 3
        assert lp.top[0][0] == lp.token and lp.top[0][2] == lp.logprob
        assert [t[2] for t in lp.top] == sorted((t[2] for t in lp.top), reverse=True)


async def test_logprobs_zero_gives_no_alternatives(fake_core):
    result = await (await fake_core.inference.generate(req(logprobs=0))).collect()
    assert result.logprobs and all(lp.top == () for lp in result.logprobs)


async def test_no_logprobs_unless_asked(fake_core):
    gen = await fake_core.inference.generate(req())
    events = await events_of(gen)
    assert all(e.logprobs == () for e in events)
    assert gen.result.logprobs == ()


async def test_logprobs_with_a_stop_string(fake_core):
    result = await (await fake_core.inference.generate(req(logprobs=1, stop=["fake"]))).collect()
    assert result.text == "Hello from the "
    # the tokens held back for the stop string went with no text: dropped with it
    assert "".join(lp.token for lp in result.logprobs) == "Hello from the "


async def test_logprobs_of_split_characters(core_factory):
    core = await core_factory(FakeEngine("é!", split_bytes=True))
    gen = await core.inference.generate(req(logprobs=1))
    events = await events_of(gen)
    assert [e.text for e in events] == ["é", "!"]
    # the two tokens of é arrive with the event that completes it
    assert [len(e.logprobs) for e in events] == [2, 1]
    assert [lp.token_bytes for lp in events[0].logprobs] == [b"\xc3", b"\xa9"]


async def test_each_choice_has_its_logprobs(fake_core):
    gen = await fake_core.inference.generate(req(n=2, logprobs=1))
    await gen.collect()
    for r in gen.results:
        assert "".join(lp.token for lp in r.logprobs) == REPLY


async def test_logit_bias_reaches_the_sampler(fake_core):
    # the fake bans a piece of its reply biased by -100: token 0 is "H"
    result = await (await fake_core.inference.generate(req(logit_bias=((0, -100.0),)))).collect()
    assert result.text == REPLY[1:]


@pytest.mark.parametrize("token", [-1, 32000, 10**9])
async def test_logit_bias_outside_the_vocabulary_is_a_400(fake_core, token):
    with pytest.raises(ValidationError) as e:
        await fake_core.inference.generate(req(logit_bias=((token, 1.0),)))
    assert e.value.field == "logit_bias"
    assert str(token) in e.value.message
