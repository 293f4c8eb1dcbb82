"""Machine figures from psutil (and NVML when an NVIDIA driver is there), in raw units.

Every function here blocks (psutil reads /proc, NVML talks to the driver, a
CPU sample sleeps): call them off the event loop, e.g. with
``asyncio.to_thread``. Sizes are bytes, shares are percents; the APIs convert.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass(frozen=True)
class CpuFigures:
    """CPU use over a short sample, and the core counts."""

    usage_percent: float
    cores: int
    physical_cores: int | None


@dataclass(frozen=True)
class MemoryFigures:
    """Physical memory."""

    total_bytes: int
    used_bytes: int
    available_bytes: int
    usage_percent: float


@dataclass(frozen=True)
class DiskFigures:
    """The file system holding a path."""

    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int

    @property
    def usage_percent(self) -> float:
        """Used over total, in percent."""
        return self.used_bytes / self.total_bytes * 100 if self.total_bytes else 0.0


@dataclass(frozen=True)
class GpuDevice:
    """One NVIDIA GPU."""

    index: int
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    utilization_percent: float


@dataclass(frozen=True)
class GpuFigures:
    """The GPUs NVML sees; ``reason`` says why there are none."""

    devices: list[GpuDevice] = field(default_factory=list)
    reason: str | None = None

    @property
    def available(self) -> bool:
        """True when at least one GPU is there."""
        return bool(self.devices)


@dataclass(frozen=True)
class SystemResources:
    """CPU, memory, the disk of the models directory and the GPUs."""

    cpu: CpuFigures
    memory: MemoryFigures
    disk: DiskFigures
    gpu: GpuFigures


@dataclass(frozen=True)
class ProcessFigures:
    """One process (with its children, when asked) sampled over a short time."""

    pid: int
    rss_bytes: int
    threads: int
    cpu_percent: float


@dataclass(frozen=True)
class MachineLoad:
    """Load averages, per-core CPU use, this process, and the machine's uptime."""

    load_1m: float
    load_5m: float
    load_15m: float
    cores: int
    cpu_percent_per_core: list[float]
    process: ProcessFigures
    boot_time: float

    @property
    def load_per_core(self) -> float:
        """The one-minute load average per logical core."""
        return self.load_1m / self.cores if self.cores else 0.0

    @property
    def uptime_s(self) -> float:
        """Seconds since the machine booted."""
        return time.time() - self.boot_time


def cpu() -> CpuFigures:
    """CPU use over a 0.1 s sample, and the core counts."""
    return CpuFigures(psutil.cpu_percent(interval=0.1), psutil.cpu_count(logical=True) or os.cpu_count() or 1,
                      psutil.cpu_count(logical=False))


def memory() -> MemoryFigures:
    """Physical memory now."""
    vm = psutil.virtual_memory()
    return MemoryFigures(vm.total, vm.total - vm.available, vm.available, vm.percent)


def disk(path: Path) -> DiskFigures:
    """The file system holding ``path`` (the first existing parent); raises OSError when none can be read."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    du = shutil.disk_usage(p)
    return DiskFigures(str(path), du.total, du.used, du.free)


def gpus() -> GpuFigures:
    """NVIDIA GPUs through NVML (nvidia-ml-py); no devices and a ``reason`` when there are none."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return GpuFigures(reason="nvidia-ml-py is not installed: no GPU figures")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver, no GPU
        return GpuFigures(reason=f"no NVIDIA GPU or driver: {type(exc).__name__}")
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            util = pynvml.nvmlDeviceGetUtilizationRates(h)
            name = pynvml.nvmlDeviceGetName(h)
            devices.append(GpuDevice(i, name.decode() if isinstance(name, bytes) else str(name), int(mem.total),
                                     int(mem.used), int(mem.free), float(util.gpu)))
        return GpuFigures(devices, None if devices else "the driver reports no GPU")
    finally:
        pynvml.nvmlShutdown()


def resources(models_dir: Path) -> SystemResources:
    """CPU, memory, disk (of the models directory) and GPUs."""
    return SystemResources(cpu(), memory(), disk(models_dir), gpus())


def machine_load(process: psutil.Process | None = None) -> MachineLoad:
    """Load averages, per-CPU use over 0.1 s, this process, and the boot time."""
    one, five, fifteen = os.getloadavg()
    proc = process or psutil.Process()
    with proc.oneshot():
        figures = ProcessFigures(proc.pid, proc.memory_info().rss, proc.num_threads(),
                                 proc.cpu_percent(interval=None))
    return MachineLoad(one, five, fifteen, psutil.cpu_count(logical=True) or 1,
                       psutil.cpu_percent(interval=0.1, percpu=True), figures, psutil.boot_time())


def process_tree(pid: int, with_children: bool) -> ProcessFigures | None:
    """A process (and its children) sampled over 0.1 s; ``None`` when it is gone."""
    try:
        proc = psutil.Process(pid)
        procs = [proc] + (proc.children(recursive=True) if with_children else [])
        for p in procs:
            p.cpu_percent(None)
        time.sleep(0.1)
        cpu_pct = sum(p.cpu_percent(None) for p in procs)
        rss = sum(p.memory_info().rss for p in procs)
        threads = sum(p.num_threads() for p in procs)
    except psutil.Error:
        return None
    return ProcessFigures(pid, rss, threads, cpu_pct)
