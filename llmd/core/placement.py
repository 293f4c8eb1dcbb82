"""Memory-aware placement: will a deployment fit, and which idle ones must go first.

The estimate of one deployment is the GGUF file size (the weights, memory-mapped
but resident once used) plus its KV cache, read from the header:
``n_layer x n_head_kv x (key_length + value_length) x 2 bytes (f16) x n_ctx x
slots``. The budget is ``deployments.memory_budget_mb``, or 80% of RAM when it
is 0. A start that does not fit evicts the least recently used idle, unpinned
deployments, but only when evicting them makes it fit; otherwise nothing is
evicted and the start fails with the figures.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

import psutil

from llmd.core.gguf_info import read_gguf_info

MIB = 1 << 20


def budget_bytes(memory_budget_mb: int) -> int:
    """The memory budget in bytes: the configured MiB, or 80% of physical RAM for 0."""
    if memory_budget_mb > 0:
        return memory_budget_mb * MIB
    return int(psutil.virtual_memory().total * 0.8)


# Bytes per K or V element: ggml's q8_0 stores 32 values in 34 bytes, q4_0 in 18.
KV_BYTES_PER_ELEMENT = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


@functools.lru_cache(maxsize=64)
def _kv_elements_per_token(path: str, mtime_ns: int) -> int:
    """KV cache elements (K and V values) per token of context, from the GGUF header."""
    meta = read_gguf_info(path).metadata
    arch = meta.get("general.architecture")

    def num(key: str, default: int | None = None) -> int | None:
        value = meta.get(f"{arch}.{key}")
        if isinstance(value, list):  # per-layer head counts in some architectures
            value = max((v for v in value if isinstance(v, int)), default=None)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default

    n_layer = num("block_count", 0) or 0
    n_embd = num("embedding_length", 0) or 0
    n_head = num("attention.head_count", 0) or 0
    n_head_kv = num("attention.head_count_kv", n_head) or n_head
    head_dim = n_embd // n_head if n_head else 0
    k_len = num("attention.key_length", head_dim) or head_dim
    v_len = num("attention.value_length", head_dim) or head_dim
    return n_layer * n_head_kv * (k_len + v_len)


def estimate_bytes(path: str, n_ctx: int, n_slots: int, size_bytes: int | None = None,
                   kv_cache_type: str = "f16") -> int:
    """Estimated resident memory of a model file loaded with ``n_ctx`` tokens per slot, its KV cache
    stored as ``kv_cache_type``.

    Blocking (reads the header once per file version): call it off the event loop.
    """
    try:
        st = os.stat(path)
    except OSError:
        return size_bytes or 0
    try:
        per_token = _kv_elements_per_token(path, st.st_mtime_ns) * KV_BYTES_PER_ELEMENT[kv_cache_type]
    except Exception:  # noqa: BLE001 - a header we cannot read gives a weights-only estimate
        per_token = 0
    return st.st_size + int(per_token * max(1, n_ctx) * max(1, n_slots))


class Placed(Protocol):
    """What placement needs to know of a live deployment."""

    memory_bytes: int
    pinned: bool
    last_used: float

    def is_idle(self) -> bool:
        """Running with nothing queued or generating."""


@dataclass
class Plan:
    """The outcome of :func:`plan`: fits (after evicting ``evict``) or not, with the figures."""

    fits: bool
    evict: list[Any]
    needed: int
    budget: int
    in_use: int
    running: int = 0  # live deployments beside the one to start
    max_running: int = 0  # deployments.max_running (0: no count bound)

    @property
    def too_many(self) -> bool:
        """Refused for the count of deployments rather than for memory."""
        return bool(self.max_running) and self.needed + self.in_use <= self.budget

    def figures(self, deployments: Iterable[Any]) -> dict[str, Any]:
        """The figures an InsufficientResourcesError carries, in MiB."""
        return {
            "needed_mb": round(self.needed / MIB, 1),
            "budget_mb": round(self.budget / MIB, 1),
            "in_use_mb": round(self.in_use / MIB, 1),
            "available_mb": round(max(0, self.budget - self.in_use) / MIB, 1),
            "running": self.running,
            "max_running": self.max_running,
            "deployments": [
                {"model": d.model.name, "deployment_id": d.id, "state": d.state.value,
                 "memory_mb": round(d.memory_bytes / MIB, 1), "pinned": d.pinned, "idle": d.is_idle()}
                for d in deployments
            ],
        }


def plan(needed: int, budget: int, live: list[Any], max_running: int = 0) -> Plan:
    """Decide whether ``needed`` bytes fit beside the ``live`` deployments, and whether one more
    deployment stays within ``max_running`` (0: no count bound).

    Evicts, in least-recently-used order, idle unpinned deployments until both
    hold; if even evicting all of them is not enough, ``fits`` is False and
    ``evict`` is empty (nothing should be evicted for a start that fails anyway).
    """
    in_use = sum(d.memory_bytes for d in live)

    def fits(evicted: int, freed: int) -> bool:
        return needed + in_use - freed <= budget and (not max_running or len(live) - evicted + 1 <= max_running)

    if fits(0, 0):
        return Plan(True, [], needed, budget, in_use, len(live), max_running)
    candidates = sorted((d for d in live if not d.pinned and d.is_idle()), key=lambda d: d.last_used)
    evict, freed = [], 0
    for d in candidates:
        evict.append(d)
        freed += d.memory_bytes
        if fits(len(evict), freed):
            return Plan(True, evict, needed, budget, in_use, len(live), max_running)
    return Plan(False, [], needed, budget, in_use, len(live), max_running)
