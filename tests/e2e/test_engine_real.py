"""The batching engine on the real bundled model, in process (no HTTP)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import make_config

from llmd.core import Core
from llmd.core.engine.llama_cpp import LlamaCppEngine
from llmd.core.registry import find_bundled_gguf
from llmd.core.types import ChatMessage, GenerateRequest, SamplingParams
from llmd.errors import ServerBusyError
from llmd.store import Store

pytestmark = pytest.mark.e2e


@pytest.fixture
async def real_core(tmp_path: Path):
    """A Core on llama.cpp with the bundled model as the default, loaded."""
    cores = []

    async def make(**flags):
        cfg = make_config(tmp_path / f"c{len(cores)}", **{"models.discover_bundled": True,
                                                           "models.default": "smollm2-135m-instruct",
                                                           "engine.n_ctx": 1024, **flags})
        store = Store(cfg.db_path)
        await store.open()
        core = Core(cfg, store, LlamaCppEngine())
        await core.start()
        dep = core.fleet.default()
        await dep.wait_loaded(120)
        dep.check_running()
        cores.append((core, store))
        return core

    yield make
    for core, store in cores:
        await core.shutdown()
        await store.close()


def chat(text: str, **params) -> GenerateRequest:
    return GenerateRequest(messages=(ChatMessage("user", text),), params=SamplingParams(**params))


async def test_greedy_output_matches_llama_cpp_python(real_core):
    """temperature 0 gives exactly what Llama.create_completion gives for the same prompt."""
    from llama_cpp import Llama

    core = await real_core(**{"engine.parallel": 2})
    prompt = "The three primary colours are"
    gen = await core.inference.generate(GenerateRequest(prompt=prompt, params=SamplingParams(
        max_tokens=32, temperature=0, repeat_penalty=1.0, ignore_eos=True)))
    ours = (await gen.collect()).text

    path = str(find_bundled_gguf()[0])
    # llmd's contexts take llama.cpp's default attention (flash attention where the backend has it, as
    # the CPU does); llama-cpp-python's Llama turns it off unless asked. The two sum in different orders,
    # which flips near ties between tokens, so the reference is asked for the same attention.
    llm = await asyncio.to_thread(Llama, model_path=path, n_ctx=1024, n_threads=2, verbose=False, flash_attn=True)
    try:
        ref = await asyncio.to_thread(llm.create_completion, prompt, max_tokens=32, temperature=0.0,
                                      repeat_penalty=1.0, top_k=0, top_p=1.0, min_p=0.0)
    finally:
        llm.close()
    ref_text = ref["choices"][0]["text"]
    assert ref["usage"]["completion_tokens"] == 32, "the reference stopped early; pick another prompt"
    assert ours == ref_text


async def test_eight_concurrent_streams_complete_with_distinct_answers(real_core):
    core = await real_core(**{"engine.parallel": 8})
    prompts = ["Name a red fruit.", "Name a blue animal.", "What is 2+2?", "Say hi in Spanish.",
               "Name a planet.", "Name a metal.", "Say a colour.", "Name a river."]
    gens = [await core.inference.generate(chat(p, max_tokens=24, temperature=0)) for p in prompts]
    dep = core.fleet.default()

    async def run(gen):
        return await gen.collect()

    results = await asyncio.gather(*(run(g) for g in gens))
    assert all(r.error is None and r.text.strip() for r in results)
    assert len({r.text for r in results}) >= 6, [r.text for r in results]
    # They were decoded together: some step carried several sequences.
    assert dep.scheduler.steps < sum(r.usage.completion_tokens for r in results)
    # Each answer equals the same prompt run alone: batching does not mix sequences.
    alone = await (await core.inference.generate(chat(prompts[2], max_tokens=24, temperature=0))).collect()
    assert alone.text.split()[:3] == results[2].text.split()[:3]


async def test_chinese_and_russian_streams_side_by_side_stay_intact(real_core):
    core = await real_core(**{"engine.parallel": 4})
    prompts = ["用中文介绍一下北京。", "Расскажи о Москве по-русски.", "用中文写一首短诗。", "Что такое нейросеть?"]
    gens = [await core.inference.generate(chat(p, max_tokens=48, temperature=0.8, seed=3)) for p in prompts]

    async def pieces(gen):
        return [ev.text async for ev in gen]

    for got, gen in zip(await asyncio.gather(*(pieces(g) for g in gens)), gens, strict=True):
        assert "".join(got) == gen.result.text
        for piece in got:
            piece.encode("utf-8")  # a lone surrogate or broken character would raise
            assert "\ufffd" not in piece


async def test_prefix_cache_reuses_the_previous_turn(real_core):
    core = await real_core(**{"engine.parallel": 2})
    dep = core.fleet.default()
    history = [ChatMessage("system", "You are a terse assistant."), ChatMessage("user", "My name is Alice.")]
    first = await (await core.inference.generate(GenerateRequest(messages=tuple(history),
                                                       params=SamplingParams(max_tokens=16, temperature=0)))).collect()
    history += [ChatMessage("assistant", first.text), ChatMessage("user", "What is my name?")]
    before = dep.scheduler.prompt_tokens_evaluated
    second = await (await core.inference.generate(GenerateRequest(messages=tuple(history),
                                                        params=SamplingParams(max_tokens=16, temperature=0)))).collect()
    evaluated = dep.scheduler.prompt_tokens_evaluated - before
    assert second.usage.cached_tokens > 0
    assert evaluated < second.usage.prompt_tokens
    assert evaluated == second.usage.prompt_tokens - second.usage.cached_tokens


QUOTED = ("The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single "
          "step. All that glitters is not gold. Actions speak louder than words. Practice makes perfect.")


@pytest.mark.parametrize("temperature", [0.0, 0.7])
async def test_ngram_speculation_gives_the_same_answer_in_fewer_steps(real_core, temperature):
    """A lone stream that quotes its prompt: drafts from the prompt are accepted, and the answer is the one
    decoded a token at a time (greedy, and sampled with a seed)."""
    answers, steps = {}, {}
    for draft in (0, 8):
        core = await real_core(**{"engine.ngram_draft_tokens": draft, "engine.parallel": 1})
        r = await (await core.inference.generate(chat(f"Copy this text exactly, word for word:\n\n{QUOTED}",
                                                      max_tokens=64, temperature=temperature, seed=7))).collect()
        sched = core.fleet.default().scheduler
        answers[draft], steps[draft] = r.text, sched.steps
        if draft:
            assert sched.stats()["draft_tokens_accepted"] > 0
    assert answers[8] == answers[0] and answers[0].strip()
    assert steps[8] < steps[0]


@pytest.mark.parametrize("kv_cache_type", ["q8_0", "q4_0"])
async def test_a_quantized_kv_cache_loads_and_answers(real_core, kv_cache_type):
    core = await real_core(**{"engine.kv_cache_type": kv_cache_type, "engine.parallel": 2})
    assert core.fleet.default().settings.kv_cache_type == kv_cache_type
    r = await (await core.inference.generate(chat("What is the capital of France?", max_tokens=16,
                                                   temperature=0))).collect_or_raise()
    assert r.usage.completion_tokens >= 1 and r.text.strip()


async def test_queue_overflow_is_refused_with_retry_after(real_core):
    core = await real_core(**{"engine.parallel": 1, "engine.queue_size": 1})
    running = await core.inference.generate(chat("Tell a long story.", max_tokens=200, ignore_eos=True))
    waiting = await core.inference.generate(chat("Hi", max_tokens=4))
    with pytest.raises(ServerBusyError) as e:
        await core.inference.generate(chat("Hi again", max_tokens=4))
    assert e.value.status == 503 and int(e.value.headers["Retry-After"]) >= 1
    running.cancel()
    assert (await waiting.collect()).error is None


async def test_an_embedding_input_with_no_tokens_is_refused_by_name(real_core):
    """"\\x04" tokenizes to nothing; decoding nothing fails inside llama.cpp (it was a 500)."""
    from llmd.errors import ValidationError

    core = await real_core()
    with pytest.raises(ValidationError) as info:
        await core.inference.embed("default", ["hello", "\x04"])
    assert info.value.field == "input" and "input[1]" in info.value.message
    result = await core.inference.embed("default", ["hello"])  # the embedding context is still good
    assert len(result.vectors[0]) > 0
