"""The memory estimate's parts, the derived budget, and placement counting measurements (FakeEngine)."""

from __future__ import annotations

import logging
from pathlib import Path

import gguf
import numpy as np
import pytest
from helpers import write_tiny_gguf

from llmd.core import memory
from llmd.core.memory import MIB, MemoryMeasure
from llmd.core.types import DeploymentState
from llmd.errors import InsufficientResourcesError

KIB = 1 << 10


def shaped_gguf(path: Path, *, causal: bool | None = None) -> Path:
    """A header with a known shape: 2 layers, 64 wide, 4 heads (2 for K/V), n_ff 128, a 1000-token vocab."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_vocab_size(1000)
    if causal is not None:
        w.add_bool("llama.attention.causal", causal)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_the_estimate_adds_every_part_from_the_header(tmp_path):
    path = shaped_gguf(tmp_path / "m.gguf")
    size = path.stat().st_size
    est = memory.estimate(str(path), n_ctx=100, n_slots=2, n_batch=64)
    # 2 layers x 2 kv heads x (16 + 16) = 128 K/V values per token, f16; the context (200) padded to 256
    assert est.kv_cache == 128 * 2 * 256
    assert est.weights == size and est.tokenizer == 1000 * memory.TOKENIZER_BYTES_PER_TOKEN
    # one output per slot: logits of the 1000-token vocabulary, f32
    assert est.output == 1000 * 4 * 2
    assert est.compute == 64 * 4 * (6 * 64 + 3 * 128) + est.output + memory.CONTEXT_OVERHEAD
    chunk = memory.EMBED_CHUNK
    assert est.embedding == (128 * 2 * 256 + chunk * 4 * (2 * 1000 + 64) + chunk * 4 * (6 * 64 + 3 * 128)
                             + memory.CONTEXT_OVERHEAD)
    assert est.total == est.weights + est.tokenizer + est.kv_cache + est.compute + est.output + est.embedding
    assert est.gpu == 0 and est.host == est.total
    # quantized KV caches: q8_0 stores 32 values in 34 bytes, q4_0 in 18
    assert memory.estimate(str(path), n_ctx=100, n_slots=2, kv_cache_type="q8_0").kv_cache == 128 * 34 // 32 * 256
    assert memory.estimate(str(path), n_ctx=100, n_slots=2, kv_cache_type="q4_0").kv_cache == 128 * 18 // 32 * 256
    # n-gram drafts ask for the logits of every draft token of every slot
    assert memory.estimate(str(path), n_ctx=100, n_slots=2, n_batch=64, draft_tokens=3).output == 1000 * 4 * 8


def test_an_encoder_embeds_a_whole_input_per_batch(tmp_path):
    path = shaped_gguf(tmp_path / "enc.gguf", causal=False)
    est = memory.estimate(str(path), n_ctx=512, n_slots=1, n_batch=64)
    assert est.embedding == 512 * 4 * (2 * 1000 + 64) + 512 * 4 * (6 * 64 + 3 * 128) + memory.CONTEXT_OVERHEAD


def test_gpu_offload_splits_by_the_layers_offloaded(tmp_path):
    path = shaped_gguf(tmp_path / "m.gguf")
    cpu = memory.estimate(str(path), n_ctx=100, n_slots=2)
    half = memory.estimate(str(path), n_ctx=100, n_slots=2, n_gpu_layers=1)
    every = memory.estimate(str(path), n_ctx=100, n_slots=2, n_gpu_layers=-1)
    assert half.total == every.total == cpu.total
    assert half.gpu == int((cpu.weights + cpu.kv_cache + cpu.embedding) * 0.5) + cpu.compute
    assert every.gpu == cpu.weights + cpu.kv_cache + cpu.embedding + cpu.compute
    assert every.host == cpu.tokenizer + cpu.output


def test_a_file_without_a_shape_counts_its_size(tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    assert memory.estimate(str(path), n_ctx=100).total == path.stat().st_size
    assert memory.estimate(str(tmp_path / "missing.gguf"), n_ctx=100, size_bytes=7).total == 7


def test_the_budget_is_derived_from_the_machine():
    gib = memory.GIB
    b = memory.budget(0, total_ram=24 * gib)
    assert b.derived and b.host == 24 * gib - int(24 * gib * 0.2) and "derived" in b.reason
    # a small box keeps at least 1 GiB for the system
    assert memory.budget(0, total_ram=4 * gib).host == 3 * gib
    # each GPU keeps 10%, at least 512 MiB
    b = memory.budget(0, total_ram=8 * gib, gpu_totals=[24 * gib, 2 * gib])
    assert b.gpus == [24 * gib - int(24 * gib * 0.1), 2 * gib - 512 * MIB] and b.gpu == sum(b.gpus)
    b = memory.budget(1500, total_ram=8 * gib)
    assert not b.derived and b.host == 1500 * MIB and "deployments.memory_budget_mb" in b.reason


def test_rss_is_read_from_proc():
    import psutil

    assert abs(memory.rss_bytes() - psutil.Process().memory_info().rss) < 64 * MIB


def sized(path: Path, size: int) -> Path:
    write_tiny_gguf(path)
    with path.open("ab") as fh:
        fh.truncate(size)
    return path


async def test_placement_counts_a_measurement_above_the_estimate(core_factory, tmp_path, caplog):
    core = await core_factory(**{"deployments.memory_budget_mb": 2, "deployments.pin_default": False})
    for name in ("a", "b"):
        await core.registry.add_file(sized(tmp_path / f"{name}.gguf", 700 * KIB), name)
    a = await core.fleet.start_model("a")
    assert a.memory_bytes == 700 * KIB and a.placed_bytes() == 700 * KIB
    # a and b fit the 2 MiB budget by their estimates...
    b = await core.fleet.start_model("b")
    assert a.state is DeploymentState.RUNNING and b.state is DeploymentState.RUNNING
    await core.fleet.stop_model("b")
    # ...but a was measured at 1.5 MiB: its measurement counts, with a warning naming both figures
    with caplog.at_level(logging.WARNING):
        a.loaded.measured = MemoryMeasure(load=1536 * KIB)
        a.check_memory()
    assert "above its estimate" in caplog.text and "measured 1.5 MiB" in caplog.text
    assert a.placed_bytes() == 1536 * KIB
    assert any("above its estimate" in line for _, _, line in a.logs)
    info = a.info()
    assert info.memory_bytes == 1536 * KIB and info.memory_measured["total"] == 1536 * KIB
    assert info.memory_estimate["total"] == 700 * KIB
    # so b now evicts the idle a instead of fitting beside it
    b = await core.fleet.start_model("b")
    assert b.state is DeploymentState.RUNNING and core.fleet.get("a") is None
    # and pinned, a measured deployment refuses a start with the figures
    a = await core.fleet.start_model("a", pinned=True)
    a.loaded.measured = MemoryMeasure(load=1800 * KIB)
    await core.fleet.stop_model("b")
    with pytest.raises(InsufficientResourcesError) as err:
        await core.fleet.start_model("b")
    figures = err.value.details
    assert figures["needed_mb"] == round(700 / 1024, 1) and figures["in_use_mb"] == round(1800 / 1024, 1)
    (dep,) = figures["deployments"]
    assert dep["estimate_mb"] == round(700 / 1024, 1) and dep["measured_mb"] == round(1800 / 1024, 1)
    assert figures["estimate"]["total"] == round(700 / 1024, 1)
