"""Memory budget, LRU eviction, idle unload and pinning, on the FakeEngine."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from helpers import settle, write_tiny_gguf

from llmd.core import placement
from llmd.core.engine.fake import FakeEngine
from llmd.core.types import DeploymentState, GenerateRequest, SamplingParams
from llmd.errors import DeploymentNotFoundError, DeploymentNotRunningError, InsufficientResourcesError

KIB = 1 << 10


def sized_gguf(path: Path, size: int) -> Path:
    """A valid tiny GGUF padded to ``size`` bytes (the estimate is the file size: no KV keys)."""
    write_tiny_gguf(path)
    with path.open("ab") as fh:
        fh.truncate(size)
    return path


class Dep:
    def __init__(self, name, mb, last, pinned=False, idle=True, gpu_mb=0):
        self.memory_bytes, self.last_used, self.pinned = mb * placement.MIB, last, pinned
        self._idle, self.name, self.gpu = idle, name, gpu_mb * placement.MIB

    def is_idle(self):
        return self._idle

    def placed_bytes(self):
        return self.memory_bytes

    def placed_gpu_bytes(self):
        return self.gpu


def test_plan_picks_the_least_recently_used_idle_unpinned():
    a, b, c = Dep("a", 300, 1.0), Dep("b", 300, 0.5), Dep("c", 300, 0.1, pinned=True)
    plan = placement.plan(400 * placement.MIB, 1000 * placement.MIB, [a, b, c])
    assert plan.fits and plan.evict == [b]  # c is older but pinned
    plan = placement.plan(700 * placement.MIB, 1000 * placement.MIB, [a, b, c])
    assert plan.fits and plan.evict == [b, a]
    # even evicting every candidate is not enough: nothing is evicted
    plan = placement.plan(800 * placement.MIB, 1000 * placement.MIB, [a, b, c])
    assert not plan.fits and plan.evict == []
    busy = Dep("busy", 300, 0.0, idle=False)
    plan = placement.plan(500 * placement.MIB, 1000 * placement.MIB, [busy, a])
    assert plan.fits and plan.evict == [a]


def test_plan_keeps_the_gpus_budget_too():
    mib = placement.MIB
    a, b = Dep("a", 100, 1.0, gpu_mb=500), Dep("b", 100, 0.5, gpu_mb=100)
    # host memory is plenty; the GPU is what is short: the idle b goes first, then a
    plan = placement.plan(100 * mib, 10_000 * mib, [a, b], needed_gpu=450 * mib, gpu_budget=1000 * mib)
    assert plan.fits and plan.evict == [b]
    plan = placement.plan(100 * mib, 10_000 * mib, [a, b], needed_gpu=900 * mib, gpu_budget=1000 * mib)
    assert plan.fits and plan.evict == [b, a]
    plan = placement.plan(100 * mib, 10_000 * mib, [a, b], needed_gpu=1100 * mib, gpu_budget=1000 * mib)
    assert not plan.fits and plan.gpu_short and not plan.too_many
    # nothing on the GPU for this start: the GPUs' budget does not apply
    assert placement.plan(100 * mib, 10_000 * mib, [a, b], needed_gpu=0, gpu_budget=1).fits



async def make(core_factory, tmp_path, **flags):
    core = await core_factory(**{"deployments.memory_budget_mb": 1, **flags})
    for name in ("a", "b"):
        await core.registry.add_file(sized_gguf(tmp_path / f"{name}.gguf", 600 * KIB), name)
    return core


async def test_a_start_that_does_not_fit_evicts_the_lru_idle_unpinned(core_factory, tmp_path):
    core = await make(core_factory, tmp_path)
    assert core.fleet.get("tiny").pinned  # the default model is pinned by default
    a = await core.fleet.start_model("a")
    assert a.state is DeploymentState.RUNNING and not a.pinned and a.id.startswith("deploy_")
    with core.events.subscribe("deployment.evicted") as sub:
        b = await core.fleet.start_model("b")
        topic, event = await sub.get(timeout=5)
    assert b.state is DeploymentState.RUNNING
    assert core.fleet.get("a") is None and event["model"] == "a" and event["for_model"] == "b"
    rec = await core.fleet.record(a.id)
    assert rec.state is DeploymentState.STOPPED and rec.stop_reason == "evicted"
    assert "evicted to make room for 'b'" in rec.note
    a_log = " ".join(x.message for x in await core.logs.tail("a", 50))
    b_log = " ".join(x.message for x in await core.logs.tail("b", 50))
    assert "evicted to make room for 'b'" in a_log and "evicted 'a'" in b_log
    with pytest.raises(DeploymentNotRunningError):
        core.fleet.by_id(a.id)
    with pytest.raises(DeploymentNotFoundError):
        core.fleet.by_id("deploy_999")


async def test_nothing_is_evicted_when_it_would_not_be_enough(core_factory, tmp_path):
    core = await make(core_factory, tmp_path)
    a = await core.fleet.start_model("a", pinned=True)
    with pytest.raises(InsufficientResourcesError) as info:
        await core.fleet.start_model("b")
    d = info.value.details
    assert d["budget_mb"] == 1.0 and d["needed_mb"] >= 0.58 and d["in_use_mb"] >= 0.58
    assert {x["model"]: x["pinned"] for x in d["deployments"]} == {"tiny": True, "a": True}
    assert a.state is DeploymentState.RUNNING and core.fleet.get("b") is None


async def test_a_busy_deployment_is_not_evicted(core_factory, tmp_path):
    core = await make(core_factory, tmp_path)
    engine_slow = FakeEngine(delay_s=0.05)
    core.fleet.engine = engine_slow
    await core.fleet.start_model("a")
    gen = await core.inference.generate(GenerateRequest(prompt="hi", model="a",
                                              params=SamplingParams(max_tokens=200, ignore_eos=True)))
    it = gen.__aiter__()
    await asyncio.wait_for(it.__anext__(), 5)  # generating now
    with pytest.raises(InsufficientResourcesError):
        await core.fleet.start_model("b")
    gen.cancel()
    async for _ in it:
        pass
    b = await core.fleet.start_model("b")  # idle now: evicted
    assert b.state is DeploymentState.RUNNING and core.fleet.get("a") is None


async def test_idle_deployments_are_unloaded_after_keep_alive_pinned_ones_stay(core_factory, tmp_path):
    core = await make(core_factory, tmp_path, **{"deployments.memory_budget_mb": 0,
                                                 "deployments.keep_alive_s": 0.3})
    a = await core.fleet.start_model("a")
    b = await core.fleet.start_model("b", pinned=True)
    with core.events.subscribe("deployment.a") as sub:
        while True:
            item = await sub.get(timeout=10)
            assert item is not None, "a was not unloaded"
            if item[1].state is DeploymentState.STOPPED:
                break
    while core.fleet.get("a") is not None:  # the stop is finishing its bookkeeping
        await asyncio.sleep(0.01)
    await settle(core)
    assert core.fleet.get("b") is b and core.fleet.get("tiny").state is DeploymentState.RUNNING
    rec = await core.fleet.record(a.id)
    assert rec.stop_reason == "idle" and "idle" in rec.note, rec


async def test_a_request_keeps_a_deployment_alive(core_factory, tmp_path):
    core = await make(core_factory, tmp_path, **{"deployments.memory_budget_mb": 0})
    a = await core.fleet.start_model("a")
    before = a.last_used = time.time() - 100
    await (await core.inference.generate(GenerateRequest(prompt="hi", model="a"))).collect_or_raise()
    assert a.last_used > before + 50  # the request moved it to now
    assert await core.fleet.unload_idle(50) == []
    a.last_used = time.time() - 100
    assert await core.fleet.unload_idle(50) == ["a"]


async def test_changed_settings_restart_and_graceful_stop(core_factory, tmp_path):
    core = await make(core_factory, tmp_path, **{"deployments.memory_budget_mb": 0})
    a1 = await core.fleet.start_model("a", settings={"n_ctx": 64})
    assert await core.fleet.start_model("a", settings={"n_ctx": 64}) is a1
    a2 = await core.fleet.start_model("a", settings={"max_model_len": 128})
    assert a2 is not a1 and a2.id == a1.id and a2.settings.n_ctx == 128
    assert a1.state is DeploymentState.STOPPED
    restarted = await core.fleet.restart_model("a")
    assert restarted.id == a1.id and restarted.settings.n_ctx == 128 and restarted is not a2
    assert await core.fleet.stop_model("a", timeout=5) is True
    assert await core.fleet.stop_model("a") is False
    logs = await core.logs.tail("a", 1000)
    assert [x.message for x in logs].count("state running") == 3
