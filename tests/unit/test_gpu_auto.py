"""engine.n_gpu_layers = -2 (auto): all layers on a GPU that has room for the model, else the CPU."""

from __future__ import annotations

import pytest

from llmd.core import system
from llmd.core.engine.fake import FakeEngine
from llmd.core.system import GpuDevice, GpuFigures

GIB = 1 << 30


@pytest.mark.parametrize("gpu_build, free, layers", [
    (True, 8 * GIB, -1),  # room on the GPU: every layer
    (True, 0, 0),  # a GPU, but no room
    (False, 8 * GIB, 0),  # a CPU build: never
])
async def test_auto_offload(core_factory, monkeypatch, gpu_build, free, layers):
    device = GpuDevice(0, "Fake", 24 * GIB, 24 * GIB - free, free, 0.0)
    monkeypatch.setattr(system, "gpus", lambda: GpuFigures([device]))  # NVML at its boundary
    core = await core_factory(FakeEngine(gpu=gpu_build))
    dep = core.fleet.get("tiny")
    assert dep.settings.n_gpu_layers == layers
    log = "\n".join(e.message for e in await core.logs.tail("tiny", 50))
    assert ("all layers on the GPU" if layers else "n_gpu_layers auto: CPU") in log


async def test_a_number_in_the_config_is_used_as_it_is(core_factory, monkeypatch):
    monkeypatch.setattr(system, "gpus", lambda: GpuFigures([GpuDevice(0, "Fake", 24 * GIB, 0, 24 * GIB, 0.0)]))
    core = await core_factory(FakeEngine(gpu=True), **{"engine.n_gpu_layers": 0})
    assert core.fleet.get("tiny").settings.n_gpu_layers == 0
