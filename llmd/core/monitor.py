"""Machine figures from psutil (and pynvml when an NVIDIA driver is there).

Every function is blocking (psutil reads /proc, NVML talks to the driver):
call them off the event loop, e.g. with ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import psutil

GB = 1 << 30


def _gb(n: float) -> float:
    return round(n / GB, 2)


def cpu() -> dict[str, Any]:
    """CPU use over a short sample, and the core counts."""
    return {
        "usage_percent": psutil.cpu_percent(interval=0.1),
        "cores": psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        "physical_cores": psutil.cpu_count(logical=False),
    }


def memory() -> dict[str, Any]:
    """Physical memory, in GB (GiB) as seed 004 shows it."""
    vm = psutil.virtual_memory()
    return {"total_gb": _gb(vm.total), "used_gb": _gb(vm.total - vm.available), "available_gb": _gb(vm.available),
            "usage_percent": vm.percent}


def disk_usage(path: Path) -> Any:
    """``shutil.disk_usage`` of the file system holding ``path`` (the first existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p)


def disk(path: Path) -> dict[str, Any]:
    """The file system holding ``path`` (the first existing parent)."""
    du = disk_usage(path)
    return {"path": str(path), "total_gb": _gb(du.total), "used_gb": _gb(du.used), "free_gb": _gb(du.free),
            "usage_percent": round(du.used / du.total * 100, 1) if du.total else 0.0}


def gpus() -> dict[str, Any]:
    """NVIDIA GPUs through pynvml; ``{"available": False, "reason": ...}`` when there are none."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return {"available": False, "devices": [], "reason": "pynvml is not installed: no GPU figures"}
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver, no GPU
        return {"available": False, "devices": [], "reason": f"no NVIDIA GPU or driver: {exc}"}
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            util = pynvml.nvmlDeviceGetUtilizationRates(h)
            name = pynvml.nvmlDeviceGetName(h)
            devices.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                            "memory_total_gb": _gb(mem.total), "memory_used_gb": _gb(mem.used),
                            "memory_free_gb": _gb(mem.free), "utilization_percent": util.gpu})
        return {"available": bool(devices), "devices": devices,
                **({} if devices else {"reason": "the driver reports no GPU"})}
    finally:
        pynvml.nvmlShutdown()


def resources(models_dir: Path) -> dict[str, Any]:
    """``GET /api/system/resources``: cpu, memory, disk (of the models directory) and gpu."""
    return {"cpu": cpu(), "memory": memory(), "disk": disk(models_dir), "gpu": gpus()}


def load(process: psutil.Process | None = None) -> dict[str, Any]:
    """``GET /api/system/load``: load averages, per-CPU use, this process, uptime."""
    one, five, fifteen = os.getloadavg()
    cores = psutil.cpu_count(logical=True) or 1
    proc = process or psutil.Process()
    with proc.oneshot():
        rss = proc.memory_info().rss
        threads = proc.num_threads()
        cpu_pct = proc.cpu_percent(interval=None)
    return {
        "load_average": {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2)},
        "load_per_core": round(one / cores, 2),
        "cpu_percent_per_core": psutil.cpu_percent(interval=0.1, percpu=True),
        "cores": cores,
        "process": {"pid": proc.pid, "rss_gb": _gb(rss), "rss_bytes": rss, "threads": threads,
                    "cpu_percent": cpu_pct},
        "boot_time": psutil.boot_time(),
        "uptime_s": round(time.time() - psutil.boot_time(), 1),
    }
