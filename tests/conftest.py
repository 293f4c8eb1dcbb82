"""Fixtures shared by all suites."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import make_config, write_tiny_gguf  # noqa: E402

from llmd.core import Core  # noqa: E402
from llmd.core.engine.fake import FakeEngine  # noqa: E402
from llmd.store import Store  # noqa: E402


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A valid tiny GGUF file."""
    return write_tiny_gguf(tmp_path / "tiny.Q4_1.gguf")


@pytest.fixture
async def store(tmp_path: Path):
    """An open Store on a new SQLite file (every migration applied)."""
    s = Store(tmp_path / "db" / "llmd.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def fake_core(tmp_path: Path, tiny_gguf: Path):
    """A started Core on a FakeEngine with the tiny model registered as default."""
    cfg = make_config(tmp_path)
    store = Store(cfg.db_path)
    await store.open()
    engine = FakeEngine()
    core = Core(cfg, store, engine)
    await core.registry.add_file(tiny_gguf, "tiny")
    await core.start()
    dep = core.fleet.get("tiny")
    if dep is not None:
        await dep.wait_loaded(10)
    yield core
    await core.shutdown()
    await store.close()



@pytest.fixture
async def core_factory(tmp_path: Path, tiny_gguf: Path):
    """Build started Cores on FakeEngines of the test's choosing.

    ``await core_factory(engine, wait=True, **{"engine.queue_size": 1})``
    returns a Core whose default model ``tiny`` is registered and (with
    ``wait``) loaded. Every core built is shut down after the test, with its
    engine's ``load_gate`` opened first so that no load thread is left waiting.
    """
    built: list[tuple[Core, Store, FakeEngine]] = []

    async def make(engine: FakeEngine | None = None, *, wait: bool = True, register: bool = True,
                   **flags: object) -> Core:
        sub = tmp_path / f"core{len(built)}"
        sub.mkdir()
        cfg = make_config(sub, **flags)
        store = Store(cfg.db_path)
        await store.open()
        engine = engine or FakeEngine()
        core = Core(cfg, store, engine)
        built.append((core, store, engine))
        if register:
            await core.registry.add_file(tiny_gguf, "tiny")
        await core.start()
        dep = core.fleet.get("tiny")
        if wait and dep is not None:
            await dep.wait_loaded(10)
        return core

    yield make

    for core, store, engine in built:
        engine.load_gate.set()
        for dep in core.fleet.live():
            await dep.wait_loaded(10)
        await core.shutdown()
        await store.close()
