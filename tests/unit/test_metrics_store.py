"""The metrics history in SQLite: raw samples, rollups, retention, atomic writes, restarts."""

from __future__ import annotations

import sqlite3

import pytest

from llmd.store import Store
from llmd.store.metrics import RAW, ROLLUPS

T0 = 1_800_000_000.0  # a minute boundary (and an hour's: 1_800_000_000 = 500,000 h)


async def test_a_sample_lands_raw_and_in_every_rollup(store):
    m = store.metrics
    for i, v in enumerate([10.0, 30.0, 20.0]):  # three samples within the first minute
        await m.add_sample(T0 + i * 20, {("cpu_percent", ""): v, ("tokens_per_s", "deploy_1"): v / 10})
    await m.add_sample(T0 + 60, {("cpu_percent", ""): 50.0})  # the next minute

    raw = await m.points("cpu_percent", "", resolution=RAW, start=T0, end=T0 + 3600)
    assert [p.avg for p in raw] == [10.0, 30.0, 20.0, 50.0]
    minute = await m.points("cpu_percent", "", resolution=60, start=T0, end=T0 + 3600)
    assert [(p.ts, p.avg, p.min, p.max, p.count) for p in minute] == [(T0, 20.0, 10.0, 30.0, 3),
                                                                   (T0 + 60, 50.0, 50.0, 50.0, 1)]
    for res in ROLLUPS[1:]:
        (bucket,) = await m.points("cpu_percent", "", resolution=res, start=T0 - res, end=T0 + 3600)
        assert bucket.ts == T0 - T0 % res
        assert (bucket.avg, bucket.min, bucket.max, bucket.count) == (27.5, 10.0, 50.0, 4)
    assert await m.subjects("tokens_per_s", resolution=60, start=T0, end=T0 + 60) == ["deploy_1"]
    (per_dep,) = await m.points("tokens_per_s", "deploy_1", resolution=60, start=T0, end=T0)
    assert per_dep.avg == pytest.approx(2.0) and per_dep.count == 3


async def test_each_resolution_is_pruned_on_its_own_retention(store):
    m = store.metrics
    for i in range(10):
        await m.add_sample(T0 + i * 60, {("memory_used_bytes", ""): float(i)})
    before = await m.count()
    # raw kept 5 minutes, 1 m buckets 8 minutes, the rest forever
    gone = await m.prune({RAW: 300, 60: 480}, now=T0 + 9 * 60)
    assert gone == 4 + 1 and await m.count() == before - gone
    raw = await m.points("memory_used_bytes", "", resolution=RAW, start=0, end=T0 * 2)
    assert [p.avg for p in raw] == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    minutes = await m.points("memory_used_bytes", "", resolution=60, start=0, end=T0 * 2)
    assert len(minutes) == 9
    (day,) = await m.points("memory_used_bytes", "", resolution=86400, start=0, end=T0 * 2)
    assert day.count == 10 and day.avg == pytest.approx(4.5)


async def test_a_sample_is_written_whole_or_not_at_all(store):
    m = store.metrics
    await m.add_sample(T0, {("cpu_percent", ""): 1.0})
    before = await m.count()
    with pytest.raises(sqlite3.IntegrityError):  # the second value breaks NOT NULL after the first is written
        await m.add_sample(T0 + 1, {("cpu_percent", ""): 2.0, ("gpu_utilization", "gpu0"): None})  # type: ignore[dict-item]
    assert await m.count() == before
    (minute,) = await m.points("cpu_percent", "", resolution=60, start=T0, end=T0)
    assert minute.count == 1  # the failed sample left no trace in the rollup either


async def test_the_history_survives_a_restart(tmp_path):
    path = tmp_path / "db" / "llmd.db"
    s = Store(path)
    await s.open()
    await s.metrics.add_sample(T0, {("cpu_percent", ""): 42.0})
    await s.close()
    s = Store(path)
    await s.open()
    try:
        (p,) = await s.metrics.points("cpu_percent", "", resolution=3600, start=T0 - 3600, end=T0)
        assert p.avg == 42.0 and p.count == 1
    finally:
        await s.close()


# -- the sampler (llmd/core/history.py) -------------------------------------------------------

async def test_the_daemon_samples_the_box_and_its_deployments_on_a_timer(core_factory):
    import asyncio

    core = await core_factory(**{"monitor.interval_s": 0.1})
    deadline = asyncio.get_running_loop().time() + 10
    while core.history.samples < 2:
        assert asyncio.get_running_loop().time() < deadline, "no samples in 10 s"
        await asyncio.sleep(0.05)
    m = core.store.metrics
    cpu = await m.points("cpu_percent", "", resolution=RAW, start=0, end=T0 * 2)
    assert len(cpu) >= 2 and all(0 <= p.avg <= 100 for p in cpu)
    (rss,) = (await m.points("process_rss_bytes", "", resolution=3600, start=0, end=T0 * 2))[-1:]
    assert rss.avg > 1e6 and rss.count >= 2
    # per model, by name (a model keeps its name across restarts)
    assert "tiny" in await m.subjects("active_slots", resolution=60, start=0, end=T0 * 2)
    assert core.history.failures == 0 and core.history.last_sample_s > 0


async def test_no_history_when_the_interval_is_0(core_factory):
    core = await core_factory(**{"monitor.interval_s": 0})
    assert core.history.samples == 0 and await core.store.metrics.count() == 0


async def test_prune_applies_the_configured_retention(core_factory):
    core = await core_factory(**{"monitor.interval_s": 0, "monitor.keep_raw_h": 1, "monitor.keep_1m_d": 0})
    await core.history.sample_once(now=T0)
    await core.history.sample_once(now=T0 + 7200)
    gone = await core.history.prune(now=T0 + 7200)
    series = len(await core.history.sample_once(now=T0 + 7201))
    assert gone >= series - 2  # the first sample's raw rows (GPU figures may come and go)
    raw = await core.store.metrics.points("cpu_percent", "", resolution=RAW, start=0, end=T0 * 2)
    assert [p.ts for p in raw] == [T0 + 7200, T0 + 7201]
    minutes = await core.store.metrics.points("cpu_percent", "", resolution=60, start=0, end=T0 * 2)
    assert len(minutes) == 2  # keep_1m_d 0: kept forever
