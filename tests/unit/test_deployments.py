"""Deployments on the FakeEngine: queueing, cancellation, failures, loading, shutdown, request log."""

from __future__ import annotations

import asyncio
import time

import pytest
from helpers import wait_requests

from llmd.core.engine.fake import FakeEngine
from llmd.core.types import (
    ChatMessage,
    DeploymentState,
    FinishReason,
    GenerateRequest,
    SamplingParams,
    TokenEvent,
)
from llmd.errors import (
    ContextLengthError,
    EngineError,
    ModelNotFoundError,
    ModelNotLoadedError,
    ServerBusyError,
    ShuttingDownError,
    ValidationError,
)

CHINESE = "你好，世界！我们一起学习机器学习吧。"
RUSSIAN = "Привет, мир! Расскажи о машинном обучении."


def req(prompt: str = "hi", *, model: str | None = None, dialect: str = "core", endpoint: str = "",
        **params) -> GenerateRequest:
    if "stop" in params:
        params["stop"] = tuple(params["stop"])
    return GenerateRequest(prompt=prompt, model=model, params=SamplingParams(**params),
                           dialect=dialect, endpoint=endpoint)


def fake_model(core):
    return core.fleet.get("tiny").loaded


async def first_token(gen) -> tuple[object, TokenEvent]:
    """Start iterating ``gen`` and return (the iterator, its first event)."""
    it = gen.__aiter__()
    ev = await asyncio.wait_for(it.__anext__(), 5)
    return it, ev


async def until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


# -- the happy path ----------------------------------------------------------------

async def test_generation_streams_the_reply(core_factory):
    core = await core_factory()
    gen = await core.inference.generate(req("hello there"))
    pieces = [ev.text async for ev in gen]
    result = gen.result
    reply = "Hello from the fake engine."
    assert "".join(pieces) == reply == result.text
    assert len(pieces) == len(reply)
    assert result.finish_reason is FinishReason.STOP
    assert result.error is None
    assert result.model == "tiny"
    assert result.usage.prompt_tokens == len("hello there") // 4
    assert result.usage.completion_tokens == len(reply)
    assert result.timings.duration_s >= result.timings.ttft_s >= 0


async def test_chat_request_goes_through_the_template(core_factory):
    core = await core_factory()
    gen = await core.inference.generate(GenerateRequest(messages=(ChatMessage("user", "hi"),)))
    result = await gen.collect_or_raise()
    # the fake renders ChatML: the prompt is much longer than the bare "hi"
    assert result.usage.prompt_tokens > 5
    with pytest.raises(ValidationError) as info:
        await core.inference.generate(GenerateRequest(messages=()))
    assert info.value.field == "messages"
    with pytest.raises(ValidationError) as info:
        await core.inference.generate(GenerateRequest())
    assert info.value.field == "prompt"


async def test_max_tokens_and_stop(core_factory):
    core = await core_factory()
    r = await (await core.inference.generate(req(max_tokens=5))).collect_or_raise()
    assert r.text == "Hello"
    assert r.finish_reason is FinishReason.LENGTH
    assert r.usage.completion_tokens == 5
    r = await (await core.inference.generate(req(stop=["fake"]))).collect_or_raise()
    assert r.text == "Hello from the "
    assert r.finish_reason is FinishReason.STOP


async def test_unknown_model(core_factory):
    core = await core_factory()
    with pytest.raises(ModelNotFoundError) as info:
        await core.inference.generate(req(model="nope"))
    assert info.value.status == 404
    r = await (await core.inference.generate(req(model="default"))).collect_or_raise()  # the alias
    assert r.model == "tiny"


async def test_requests_are_served_in_order(core_factory):
    core = await core_factory(FakeEngine(reply="ab", delay_s=0.002))
    gens = [await core.inference.generate(req(f"prompt number {i}")) for i in range(5)]
    results = await asyncio.gather(*(g.collect_or_raise() for g in gens))
    assert [r.text for r in results] == ["ab"] * 5
    # one worker, FIFO: they end in the order they were submitted
    ends = [g.job.submitted + r.timings.duration_s for g, r in zip(gens, results, strict=True)]
    assert ends == sorted(ends)
    await until(lambda: core.fleet.get("tiny").completed == 5)


# -- n-gram speculation -------------------------------------------------------------

async def test_ngram_drafts_are_verified_and_change_nothing_but_the_steps(core_factory):
    """The fake's reply repeats under ignore_eos, so its own history predicts it: drafts are accepted,
    the text is the same as without them, in fewer decode steps; a stream among others gets no drafts."""
    texts, steps = {}, {}
    for draft in (0, 4):
        core = await core_factory(FakeEngine(reply="abcdefg", delay_s=0.002),
                                  **{"engine.ngram_draft_tokens": draft, "engine.parallel": 2})
        result = await (await core.inference.generate(req(ignore_eos=True, max_tokens=60))).collect_or_raise()
        sched = core.fleet.get("tiny").scheduler
        texts[draft], steps[draft] = result.text, sched.steps
        stats = sched.stats()
        if draft:
            assert stats["draft_tokens_accepted"] > 0
            assert stats["draft_tokens_accepted"] <= stats["draft_tokens_sent"]
            # two at once: no drafts (each step is already a batch of several streams)
            model = fake_model(core)
            model.batches.clear()
            a = await core.inference.generate(req(ignore_eos=True, max_tokens=30))
            b = await core.inference.generate(req(ignore_eos=True, max_tokens=30))
            await a.collect_or_raise()
            await b.collect_or_raise()
            both = [batch for batch in model.batches if len(batch) == 2]
            assert both and all(n == 1 for batch in both for _, n in batch)
        else:
            assert stats["draft_tokens_sent"] == 0
    assert texts[4] == texts[0] == ("abcdefg" * 9)[:60]
    assert steps[4] < steps[0]


# -- admission ---------------------------------------------------------------------

async def test_full_queue_is_refused_with_retry_after(core_factory):
    core = await core_factory(FakeEngine(delay_s=0.01), **{"engine.queue_size": 1, "engine.parallel": 1})
    running = await core.inference.generate(req(ignore_eos=True, max_tokens=200))
    it, _ = await first_token(running)  # now it is active, not queued
    queued = await core.inference.generate(req())
    with pytest.raises(ServerBusyError) as info:
        await core.inference.generate(req())
    err = info.value
    assert err.status == 503
    assert err.code == "server_busy"
    assert int(err.headers["Retry-After"]) >= 1
    assert err.details == {"queued": 1, "queue_size": 1}
    stats = core.fleet.get("tiny").info()
    assert stats.queued == 1 and stats.active == 1
    queued.cancel()
    await it.aclose()
    assert (await running.collect()).finish_reason is FinishReason.CANCELLED
    # room again
    await (await core.inference.generate(req(max_tokens=2))).collect_or_raise()


async def test_a_request_not_yet_picked_up_is_not_counted_as_waiting(core_factory):
    """Back to back, before the worker has taken the first: the first has a slot, the second waits, the
    third is refused, whatever the worker thread's timing."""
    core = await core_factory(FakeEngine(delay_s=0.01), **{"engine.queue_size": 1, "engine.parallel": 1})
    running = await core.inference.generate(req(ignore_eos=True, max_tokens=200))
    queued = await core.inference.generate(req(max_tokens=2))
    with pytest.raises(ServerBusyError) as info:
        await core.inference.generate(req())
    assert info.value.details == {"queued": 1, "queue_size": 1}
    running.cancel()
    assert (await running.collect()).finish_reason is FinishReason.CANCELLED
    assert (await queued.collect_or_raise()).usage.completion_tokens >= 1


async def test_queue_size_zero_refuses_while_busy(core_factory):
    core = await core_factory(FakeEngine(delay_s=0.01), **{"engine.queue_size": 0, "engine.parallel": 1})
    running = await core.inference.generate(req(ignore_eos=True, max_tokens=200))
    it, _ = await first_token(running)
    with pytest.raises(ServerBusyError):
        await core.inference.generate(req())
    await it.aclose()


# -- cancellation ------------------------------------------------------------------

async def test_cancelled_queued_generation_never_runs(core_factory):
    core = await core_factory(FakeEngine(reply="abc", delay_s=0.03))
    first = await core.inference.generate(req(dialect="test", endpoint="/first"))
    it, ev = await first_token(first)
    assert ev.text == "a"
    second = await core.inference.generate(req(dialect="test", endpoint="/second"))
    assert core.fleet.get("tiny").info().queued == 1
    second.cancel()
    assert core.fleet.get("tiny").info().queued == 0
    r2 = await asyncio.wait_for(second.collect(), 5)
    assert r2.finish_reason is FinishReason.CANCELLED
    assert r2.text == "" and r2.usage.completion_tokens == 0 and r2.error is None

    rest = [e.text async for e in it]
    assert "a" + "".join(rest) == "abc"
    model = fake_model(core)
    assert model.generated == len("abc") + 1  # three characters and the end token: only the first ran
    await asyncio.sleep(0.1)
    assert model.generated == len("abc") + 1

    rows = await wait_requests(core, 2)
    by_endpoint = {r["endpoint"]: r for r in rows}
    assert by_endpoint["/second"]["status"] == "cancelled"
    assert by_endpoint["/second"]["completion_tokens"] == 0
    assert by_endpoint["/first"]["status"] == "ok"
    assert by_endpoint["/first"]["completion_tokens"] == 3
    second.cancel()  # cancelling twice is harmless
    assert len(await core.store.requests.recent()) == 2


async def test_cancelling_a_running_generation_stops_it(core_factory):
    core = await core_factory(FakeEngine(delay_s=0.01))
    gen = await core.inference.generate(req(ignore_eos=True, max_tokens=250))
    seen = 0
    async for _ in gen:
        seen += 1
        if seen == 3:
            gen.cancel()
    r = gen.result
    assert r.finish_reason is FinishReason.CANCELLED
    assert 3 <= r.usage.completion_tokens <= 6
    model = fake_model(core)
    stopped_at = model.generated
    assert stopped_at <= 8
    await asyncio.sleep(0.1)
    assert model.generated == stopped_at  # the engine is not generating any more
    rows = await wait_requests(core, 1)
    assert rows[0]["status"] == "cancelled"
    # the deployment is free for the next request
    r = await (await core.inference.generate(req(max_tokens=3))).collect_or_raise()
    assert r.text == "Hel"


async def test_leaving_async_for_early_cancels(core_factory):
    core = await core_factory(FakeEngine(delay_s=0.01))
    gen = await core.inference.generate(req(ignore_eos=True, max_tokens=250))
    async for _ in gen:
        break
    await until(lambda: gen.job.finished)
    assert gen.job.cancel_event.is_set()
    model = fake_model(core)
    stopped_at = model.generated
    assert stopped_at < 10
    await asyncio.sleep(0.1)
    assert model.generated == stopped_at
    rows = await wait_requests(core, 1)
    assert rows[0]["status"] == "cancelled"


async def test_cancelling_the_consumer_task_cancels(core_factory):
    """What Quart does when a client disconnects: the task iterating the stream is cancelled."""
    core = await core_factory(FakeEngine(delay_s=0.01))
    gen = await core.inference.generate(req(ignore_eos=True, max_tokens=250))
    got: list[str] = []

    async def consume() -> None:
        async for ev in gen:
            got.append(ev.text)

    task = asyncio.ensure_future(consume())
    await until(lambda: len(got) >= 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: gen.job.finished)
    stopped_at = fake_model(core).generated
    assert stopped_at < 12
    await asyncio.sleep(0.1)
    assert fake_model(core).generated == stopped_at


# -- failures ----------------------------------------------------------------------

async def test_failure_mid_generation(core_factory):
    core = await core_factory(FakeEngine(fail_after=3))
    gen = await core.inference.generate(req(endpoint="/boom"))
    pieces = [ev.text async for ev in gen]
    assert "".join(pieces) == "Hel"
    r = gen.result
    assert r.finish_reason is FinishReason.ERROR
    assert isinstance(r.error, EngineError)
    assert r.error.status == 500 and r.error.code == "engine_error"
    assert r.usage.completion_tokens == 3
    with pytest.raises(EngineError):
        await (await core.inference.generate(req())).collect_or_raise()
    rows = await wait_requests(core, 2)
    assert [row["status"] for row in rows] == ["error", "error"]
    assert all(row["error"] for row in rows)
    # the worker survived: the deployment still runs and answers (with the same failure)
    assert core.fleet.get("tiny").state is DeploymentState.RUNNING
    assert any("generation failed" in line for _, _, line in core.fleet.get("tiny").logs)


async def test_failed_load(core_factory):
    core = await core_factory(FakeEngine(fail_load=True))
    dep = core.fleet.get("tiny")
    assert dep.state is DeploymentState.ERROR
    assert "fake load failure" in dep.error
    with pytest.raises(ModelNotLoadedError) as info:
        await core.inference.generate(req())
    err = info.value
    assert err.status == 503 and err.code == "model_not_loaded"
    assert "Retry-After" in err.headers
    assert "error" in err.message and "fake load failure" in err.message
    with pytest.raises(ModelNotLoadedError):
        await core.inference.embed(None, ["x"])
    health = await core.monitor.health()
    assert health.status == "error" and health.model_loaded is False
    await until(lambda: not [t for t in core.background._tasks if not t.done()])
    rows = await core.store.deployments.list()
    assert rows[0]["state"] == "error" and "fake load failure" in rows[0]["error"]


async def test_requests_while_loading(core_factory):
    engine = FakeEngine()
    engine.load_gate.clear()
    core = await core_factory(engine, wait=False)
    dep = core.fleet.get("tiny")
    await until(lambda: dep.state is DeploymentState.STARTING)
    with pytest.raises(ModelNotLoadedError) as info:
        await core.inference.generate(req())
    assert info.value.status == 503
    assert "starting" in info.value.message
    assert (await core.monitor.health()).status == "model_not_loaded"
    engine.load_gate.set()
    await dep.wait_loaded(5)
    assert dep.state is DeploymentState.RUNNING
    assert (await core.monitor.health()).status == "ok"
    r = await (await core.inference.generate(req())).collect_or_raise()
    assert r.text == "Hello from the fake engine."


async def test_request_waits_for_a_load_within_load_wait_s(core_factory):
    engine = FakeEngine()
    engine.load_gate.clear()
    core = await core_factory(engine, wait=False, **{"engine.load_wait_s": 5.0})
    task = asyncio.ensure_future(core.inference.generate(req()))
    await asyncio.sleep(0.05)
    assert not task.done()
    engine.load_gate.set()
    gen = await asyncio.wait_for(task, 5)
    assert (await gen.collect_or_raise()).text == "Hello from the fake engine."


async def test_unloaded_model_is_not_loaded(core_factory):
    core = await core_factory(**{"models.load_default": False, "deployments.load_on_demand": False})
    assert core.fleet.live() == []
    with pytest.raises(ModelNotLoadedError) as info:
        await core.inference.generate(req())
    assert info.value.details["state"] == "stopped"
    assert (await core.monitor.health()).status == "model_not_loaded"
    dep = await core.fleet.start_model("tiny")
    assert dep.state is DeploymentState.RUNNING
    assert (await (await core.inference.generate(req(max_tokens=1))).collect_or_raise()).text == "H"


async def test_a_request_loads_a_model_on_demand(core_factory):
    core = await core_factory(**{"models.load_default": False})
    assert core.fleet.live() == []
    gen = await core.inference.generate(req(max_tokens=2, model="tiny:latest"))  # Ollama's default tag
    assert (await gen.collect_or_raise()).text == "He"
    dep = core.fleet.get("tiny")
    assert dep.state is DeploymentState.RUNNING
    assert gen.load_s > 0
    assert any("loading on demand" in line for _, _, line in dep.logs)
    # the next request finds it loaded: no load time
    again = await core.inference.generate(req(max_tokens=1))
    await again.collect_or_raise()
    assert again.load_s < gen.load_s


async def test_load_on_demand_waits_a_bounded_time_then_503(core_factory):
    engine = FakeEngine()
    core = await core_factory(engine, **{"models.load_default": False, "deployments.load_on_demand_wait_s": 0.2})
    engine.load_gate.clear()
    with pytest.raises(ModelNotLoadedError) as info:
        await core.inference.generate(req())
    assert info.value.status == 503 and info.value.headers["Retry-After"]
    assert "still loading" in info.value.message
    dep = core.fleet.get("tiny")
    assert dep.state is DeploymentState.STARTING  # the load goes on
    engine.load_gate.set()
    await dep.wait_loaded(5)
    assert (await (await core.inference.generate(req(max_tokens=1))).collect_or_raise()).text == "H"


async def test_a_failed_load_is_not_retried_on_demand(core_factory):
    core = await core_factory(FakeEngine(fail_load=True))
    with pytest.raises(ModelNotLoadedError):
        await core.inference.generate(req())
    assert core.fleet.get("tiny").state is DeploymentState.ERROR


async def test_keep_alive_zero_unloads_once_idle(core_factory):
    core = await core_factory(**{"deployments.pin_default": False})
    r = GenerateRequest(prompt="hi", params=SamplingParams(max_tokens=2), keep_alive_s=0)
    await (await core.inference.generate(r)).collect_or_raise()
    await until(lambda: core.fleet.get("tiny") is None, timeout=5)
    # a negative keep-alive keeps it: the global keep-alive would unload it at once
    core.config.deployments.keep_alive_s = 0.01
    r = GenerateRequest(prompt="hi", params=SamplingParams(max_tokens=1), keep_alive_s=-1)
    await (await core.inference.generate(r)).collect_or_raise()
    await asyncio.sleep(0.3)
    assert core.fleet.get("tiny").state is DeploymentState.RUNNING
    assert core.fleet.expires_at(core.fleet.get("tiny")) is None


# -- shutdown ----------------------------------------------------------------------

async def test_shutdown_ends_running_and_queued_streams(core_factory):
    engine = FakeEngine(delay_s=0.01)
    core = await core_factory(engine)
    running = await core.inference.generate(req(ignore_eos=True, max_tokens=250, endpoint="/running"))
    it, _ = await first_token(running)
    queued = await core.inference.generate(req(endpoint="/queued"))
    await asyncio.wait_for(core.shutdown(), 10)
    rest = [ev async for ev in it]
    assert len(rest) < 10
    r = running.result
    assert r.finish_reason is FinishReason.SHUTDOWN
    assert isinstance(r.error, ShuttingDownError) and r.error.status == 503
    q = await queued.collect()
    assert q.finish_reason is FinishReason.SHUTDOWN
    assert isinstance(q.error, ShuttingDownError)
    assert q.text == ""
    assert core.fleet.get("tiny").state is DeploymentState.STOPPED
    assert engine.loaded[0].closed
    with pytest.raises(ShuttingDownError):
        await core.inference.generate(req())
    assert (await core.monitor.health()).status == "error"
    rows = await wait_requests(core, 2)
    assert {r["endpoint"]: r["status"] for r in rows} == {"/running": "shutdown", "/queued": "shutdown"}


async def test_shutdown_while_loading_leaves_nothing_running(core_factory):
    engine = FakeEngine()
    engine.load_gate.clear()
    core = await core_factory(engine, wait=False)
    dep = core.fleet.get("tiny")
    await until(lambda: dep.state is DeploymentState.STARTING)
    stopping = asyncio.ensure_future(core.shutdown())
    await asyncio.sleep(0.05)
    assert dep.state is DeploymentState.STOPPED
    engine.load_gate.set()  # the load, which cannot be interrupted, finishes now
    await asyncio.wait_for(stopping, 5)
    await dep.wait_loaded(5)
    # the model that arrived after the stop is freed, not served
    assert dep.state is DeploymentState.STOPPED
    assert dep.loaded is None
    assert len(engine.loaded) == 1 and engine.loaded[0].closed
    with pytest.raises(ShuttingDownError):
        await core.inference.generate(req())


# -- the request log ---------------------------------------------------------------

async def test_request_log_gets_one_row_per_request(core_factory):
    core = await core_factory()
    await (await core.inference.generate(req("x" * 40, dialect="openai", endpoint="/v1/completions"))).collect()
    gen = await core.inference.generate(req("y" * 8, dialect="llama_local", endpoint="/generate", max_tokens=4))
    await gen.collect()
    rows = await wait_requests(core, 2)
    assert len(rows) == 2
    newest, oldest = rows
    assert (oldest["dialect"], oldest["endpoint"], oldest["model"]) == ("openai", "/v1/completions", "tiny")
    assert oldest["prompt_tokens"] == 10
    assert oldest["completion_tokens"] == len("Hello from the fake engine.")
    assert oldest["status"] == "ok"
    assert oldest["error"] is None
    assert oldest["ttft_ms"] is not None and oldest["duration_ms"] >= oldest["ttft_ms"] >= 0
    assert (newest["dialect"], newest["endpoint"]) == ("llama_local", "/generate")
    assert newest["prompt_tokens"] == 2
    assert newest["completion_tokens"] == 4
    assert newest["status"] == "length"
    await asyncio.sleep(0.05)
    assert len(await core.store.requests.recent()) == 2
    totals = await core.store.requests.totals()
    assert totals["requests"] == 2 and totals["completion_tokens"] == 4 + len("Hello from the fake engine.")


# -- UTF-8 and context -------------------------------------------------------------

@pytest.mark.parametrize("reply", [CHINESE, RUSSIAN, CHINESE + " / " + RUSSIAN])
async def test_split_bytes_still_yields_whole_characters(core_factory, reply):
    core = await core_factory(FakeEngine(reply=reply, split_bytes=True))
    gen = await core.inference.generate(req(max_tokens=250))
    pieces = [ev.text async for ev in gen]
    assert len(pieces) > 3
    for p in pieces:
        assert p and "\ufffd" not in p
        p.encode("utf-8")
    assert "".join(pieces) == reply == gen.result.text
    assert gen.result.usage.completion_tokens == len(reply.encode("utf-8"))


async def test_split_bytes_with_a_stop_string(core_factory):
    core = await core_factory(FakeEngine(reply=RUSSIAN, split_bytes=True))
    r = await (await core.inference.generate(req(max_tokens=250, stop=["мир"]))).collect_or_raise()
    assert r.text == "Привет, "
    assert r.finish_reason is FinishReason.STOP


async def test_context_overflow_names_both_numbers(core_factory):
    core = await core_factory()
    n_ctx = core.fleet.get("tiny").loaded.n_ctx
    assert n_ctx == 256  # the tiny model's own context length caps engine.n_ctx
    prompt = "x" * 40  # 10 fake tokens
    with pytest.raises(ContextLengthError) as info:
        await core.inference.generate(req(prompt, max_tokens=250))
    err = info.value
    assert err.status == 400 and err.code == "context_length_exceeded"
    assert err.field == "max_tokens"
    assert "10" in err.message and "250" in err.message and "256" in err.message
    assert err.details == {"prompt_tokens": 10, "max_tokens": 250, "n_ctx": 256}
    # exactly the room that is left is fine
    r = await (await core.inference.generate(req(prompt, max_tokens=246, ignore_eos=True))).collect_or_raise()
    assert r.usage.completion_tokens == 246 and r.finish_reason is FinishReason.LENGTH


async def test_prompt_longer_than_context(core_factory):
    core = await core_factory()
    with pytest.raises(ContextLengthError) as info:
        await core.inference.generate(req("x" * 2000))
    assert info.value.field == "prompt"
    assert "500" in info.value.message and "256" in info.value.message


async def test_default_max_tokens_shrinks_to_the_room_left(core_factory):
    core = await core_factory()
    r = await (await core.inference.generate(req("x" * 800, ignore_eos=True))).collect_or_raise()
    assert r.usage.prompt_tokens == 200
    assert r.usage.completion_tokens == 56
    assert r.finish_reason is FinishReason.LENGTH


async def test_embeddings(core_factory):
    core = await core_factory()
    res = await core.inference.embed(None, ["hello", "мир"])
    assert len(res.vectors) == 2
    for v in res.vectors:
        assert abs(sum(x * x for x in v) - 1.0) < 1e-6
    assert res.model == "tiny"
    with pytest.raises(ValidationError) as info:
        await core.inference.embed(None, [])
    assert info.value.field == "input"
    with pytest.raises(ValidationError) as info:
        await core.inference.embed(None, ["x" * 4000])
    assert info.value.field == "input"
