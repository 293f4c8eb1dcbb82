"""LLM Inference Service API routes: ``GET /api/system/status`` (the box at a glance) and
``GET /api/system/gpu`` (every GPU through NVML).

The LLM Manager API serves ``/api/system/resources``, ``/load`` and ``/health``;
every other path under ``/api/system/`` is this API's (docs/api.md).
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field
from quart import jsonify

from llmd.core import Core
from llmd.core.monitor import SystemStatus
from llmd.core.system import GpuDevice, GpuFigures
from llmd.http.fields import StrictModel
from llmd.http.format import round_or_none
from llmd.http.routing import Dialect

MIB = 1 << 20


class StatusResponse(StrictModel):
    """``status`` healthy, degraded or unhealthy; ``uptime`` seconds; sizes of the GPUs in MiB."""

    status: str
    version: str
    uptime: int
    models: dict[str, int]
    resources: dict[str, float]
    gpu: list[dict[str, Any]]
    gpu_reason: Optional[str] = Field(default=None, description="Why `gpu` is empty (no driver, no GPU).")
    checks: dict[str, Any]


class GpuResponse(StrictModel):
    """Each GPU: utilization (%), memory (MiB), temperature (°C), power (W), processes (MiB)."""

    gpus: list[dict[str, Any]]
    driver_version: Optional[str] = None
    cuda_version: Optional[str] = None
    reason: Optional[str] = Field(default=None, description="Why `gpus` is empty (no driver, no GPU).")


def _mib(n: int | None) -> int | None:
    return None if n is None else round(n / MIB)


def gpu_brief(g: GpuDevice) -> dict[str, Any]:
    """One GPU as ``/api/system/status`` shows it."""
    return {"id": g.index, "name": g.name, "utilization": round_or_none(g.utilization_percent, 1),
            "memory_used": _mib(g.memory_used_bytes), "memory_total": _mib(g.memory_total_bytes),
            "temperature": g.temperature_c}


def gpu_detail(g: GpuDevice, figures: GpuFigures) -> dict[str, Any]:
    """One GPU as ``/api/system/gpu`` shows it."""
    return {**gpu_brief(g), "driver_version": figures.driver_version, "cuda_version": figures.cuda_version,
            "uuid": g.uuid, "memory_free": _mib(g.memory_free_bytes),
            "memory_utilization": round_or_none(g.memory_utilization_percent, 1),
            "power_usage": round_or_none(g.power_usage_w, 1), "power_limit": round_or_none(g.power_limit_w, 1),
            "processes": [{"pid": p.pid, "name": p.name, "memory_usage": _mib(p.memory_bytes)} for p in g.processes]}


def render_status(s: SystemStatus) -> dict[str, Any]:
    """The document's shape, plus the checks behind ``status`` and why ``gpu`` may be empty."""
    return {"status": s.health.status, "version": s.version, "uptime": int(s.uptime_s), "models": s.models,
            "resources": {"cpu_percent": round(s.cpu_percent, 1), "memory_percent": round(s.memory_percent, 1),
                          "disk_percent": round(s.disk_percent, 1)},
            "gpu": [gpu_brief(g) for g in s.gpu.devices], "gpu_reason": s.gpu.reason,
            "checks": {name: {"status": c.status, **c.details} for name, c in s.health.checks.items()}}


def render_gpus(f: GpuFigures) -> dict[str, Any]:
    """The document's shape: ``{"gpus": [...]}``, with the versions and the reason when there are none."""
    return {"gpus": [gpu_detail(g, f) for g in f.devices], "driver_version": f.driver_version,
            "cuda_version": f.cuda_version, "reason": f.reason}


def register(d: Dialect, core: Core) -> None:
    """Declare the system routes."""

    @d.route("/api/system/status", summary="System status", response=StatusResponse, auth="admin")
    async def system_status() -> Any:
        """The verdict (healthy, degraded, unhealthy) with its checks, the models by state, CPU, memory and
        disk use (%), and each GPU (MiB, °C)."""
        return jsonify(render_status(await core.monitor.system_status()))

    @d.route("/api/system/gpu", summary="GPU details", response=GpuResponse, auth="admin")
    async def system_gpu() -> Any:
        """Every GPU through NVML: utilization, memory, temperature, power and the processes on it. With no
        GPU or no driver: an empty list and a ``reason``, never an error."""
        return jsonify(render_gpus(await core.monitor.gpus()))
