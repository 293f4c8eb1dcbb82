"""Memory-aware placement: will a deployment fit, and which idle ones must go first.

A deployment needs its estimate (core/memory.py: weights, tokenizer, KV
cache, compute, output and embedding context); a live one counts the larger
of its estimate and its measurement (:meth:`Deployment.placed_bytes`). The
budget is ``deployments.memory_budget_mb``, or derived from the machine's RAM
(:func:`llmd.core.memory.budget`); with a GPU, the GPU parts are also held
to the GPUs' budget. A start that does not fit evicts the least recently
used idle, unpinned deployments, but only when evicting them makes it fit;
otherwise nothing is evicted and the start fails with the figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from llmd.core.memory import MIB


class Placed(Protocol):
    """What placement needs to know of a live deployment."""

    pinned: bool
    last_used: float

    def is_idle(self) -> bool:
        """Running with nothing queued or generating."""

    def placed_bytes(self) -> int:
        """What the budget counts for it: the larger of estimate and measurement."""

    def placed_gpu_bytes(self) -> int:
        """The part of it on GPUs."""


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
    needed_gpu: int = 0
    gpu_budget: int = 0  # 0: no GPU budget to keep
    gpu_in_use: int = 0
    estimate: Any = None  # the MemoryEstimate the fleet planned with

    @property
    def too_many(self) -> bool:
        """Refused for the count of deployments rather than for memory."""
        return bool(self.max_running) and self.needed + self.in_use <= self.budget and not self.gpu_short

    @property
    def gpu_short(self) -> bool:
        """Refused for the GPUs' memory."""
        return bool(self.gpu_budget) and self.needed_gpu + self.gpu_in_use > self.gpu_budget

    def figures(self, deployments: Iterable[Any]) -> dict[str, Any]:
        """The figures an InsufficientResourcesError carries, in MiB."""
        return {
            "needed_mb": round(self.needed / MIB, 1),
            "budget_mb": round(self.budget / MIB, 1),
            "in_use_mb": round(self.in_use / MIB, 1),
            "available_mb": round(max(0, self.budget - self.in_use) / MIB, 1),
            "running": self.running,
            "max_running": self.max_running,
            **({"needed_gpu_mb": round(self.needed_gpu / MIB, 1), "gpu_budget_mb": round(self.gpu_budget / MIB, 1),
                "gpu_in_use_mb": round(self.gpu_in_use / MIB, 1)} if self.gpu_budget else {}),
            "deployments": [_figures(d) for d in deployments],
        }


def _figures(d: Any) -> dict[str, Any]:
    measured = d.memory_measured()
    return {"model": d.model.name, "deployment_id": d.id, "state": d.state.value,
            "memory_mb": round(d.placed_bytes() / MIB, 1), "estimate_mb": round(d.memory_bytes / MIB, 1),
            "measured_mb": round(measured.total / MIB, 1) if measured is not None else None,
            "pinned": d.pinned, "idle": d.is_idle()}


def plan(needed: int, budget: int, live: list[Any], max_running: int = 0, *, needed_gpu: int = 0,
         gpu_budget: int = 0) -> Plan:
    """Decide whether ``needed`` bytes (``needed_gpu`` of them on GPUs) fit beside the ``live``
    deployments, and whether one more deployment stays within ``max_running`` (0: no count bound).

    Evicts, in least-recently-used order, idle unpinned deployments until all
    hold; if even evicting all of them is not enough, ``fits`` is False and
    ``evict`` is empty (nothing should be evicted for a start that fails anyway).
    """
    placed = {id(d): (d.placed_bytes(), d.placed_gpu_bytes()) for d in live}
    in_use = sum(b for b, _ in placed.values())
    gpu_in_use = sum(g for _, g in placed.values())
    gpu_budget = gpu_budget if needed_gpu else 0

    def fits(evicted: int, freed: int, freed_gpu: int) -> bool:
        return (needed + in_use - freed <= budget
                and (not gpu_budget or needed_gpu + gpu_in_use - freed_gpu <= gpu_budget)
                and (not max_running or len(live) - evicted + 1 <= max_running))

    def outcome(ok: bool, evict: list[Any]) -> Plan:
        return Plan(ok, evict, needed, budget, in_use, len(live), max_running, needed_gpu, gpu_budget, gpu_in_use)

    if fits(0, 0, 0):
        return outcome(True, [])
    candidates = sorted((d for d in live if not d.pinned and d.is_idle()), key=lambda d: d.last_used)
    evict, freed, freed_gpu = [], 0, 0
    for d in candidates:
        evict.append(d)
        freed += placed[id(d)][0]
        freed_gpu += placed[id(d)][1]
        if fits(len(evict), freed, freed_gpu):
            return outcome(True, evict)
    return outcome(False, [])
