"""Machine figures from psutil (and NVML when an NVIDIA driver is there), in raw units.

Every function here blocks (psutil reads /proc, NVML talks to the driver, a
CPU sample sleeps): call them off the event loop, e.g. with
``asyncio.to_thread``. Sizes are bytes, shares are percents; the APIs convert.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

log = logging.getLogger(__name__)

_T = TypeVar("_T")


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
        """Used over what users can have (used + free), in percent, as df shows it: the blocks reserved for
        root are not counted as room, so a full disk reads 100 %."""
        room = self.used_bytes + self.free_bytes
        return self.used_bytes / room * 100 if room else 0.0


@dataclass(frozen=True)
class GpuProcess:
    """A process holding a context on a GPU (compute or graphics).

    ``name`` is "" when the process is gone or cannot be read (another user's, or a PID from another PID namespace);
    ``memory_bytes`` is None when the driver does not say (e.g. under Windows WDDM, or without permission).
    """

    pid: int
    name: str
    memory_bytes: int | None


@dataclass(frozen=True)
class GpuDevice:
    """One NVIDIA GPU.

    The memory figures are always there (a device whose memory cannot be read is left out); the others are None when
    the board or the driver cannot give them (NVML_ERROR_NOT_SUPPORTED, NO_PERMISSION, ...). ``utilization_percent``
    is None e.g. on a GPU in MIG mode, which has no whole-device utilization.
    """

    index: int
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    utilization_percent: float | None
    temperature_c: float | None = None
    power_usage_w: float | None = None
    power_limit_w: float | None = None
    memory_utilization_percent: float | None = None
    uuid: str | None = None
    processes: list[GpuProcess] = field(default_factory=list)


@dataclass(frozen=True)
class GpuReading:
    """One GPU's figures at one sample of the metrics history (published for ``/ws/monitor``)."""

    ts: float
    device: GpuDevice


@dataclass(frozen=True)
class GpuFigures:
    """The GPUs NVML sees; ``reason`` says why there are none. The versions are None when NVML cannot say."""

    devices: list[GpuDevice] = field(default_factory=list)
    reason: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None

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
    pids: tuple[int, ...] = ()  # the process and the children counted with it


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
    """NVIDIA GPUs through NVML (nvidia-ml-py); no devices and a ``reason`` when there are none.

    Never raises: each figure NVML cannot give is None (or an empty process list), a device whose handle or memory
    cannot be read is left out, and when nothing can be read ``reason`` says why. Blocking (it talks to the driver).
    """
    try:
        # Imported here, not at the top: the module is optional at run time, and tests put a fake in sys.modules.
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return GpuFigures(reason="nvidia-ml-py is not installed: no GPU figures")
    try:
        return _read_gpus(pynvml)
    # The outer boundary, and the one broad catch: GPU figures are telemetry for the API and the history sampler
    # and must never take them down. NVMLError is handled inside; this is for anything else a binding may throw.
    except Exception as exc:  # noqa: BLE001
        log.debug("reading the GPUs through NVML failed", exc_info=True)
        return GpuFigures(reason=f"NVML: {_nvml_error(exc)}")


def _read_gpus(nvml: Any) -> GpuFigures:
    """Init NVML, read every device and shut NVML down again (raises only on errors that are not NVMLError)."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:  # LIBRARY_NOT_FOUND, DRIVER_NOT_LOADED, ...: no usable driver here
        return GpuFigures(reason=f"no NVIDIA GPU or driver: {_nvml_error(exc)}")
    try:
        driver = _text(_nvml_or_none(nvml, nvml.nvmlSystemGetDriverVersion))
        cuda = _cuda_version(nvml)
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            return GpuFigures(reason=f"NVML: {_nvml_error(exc)}", driver_version=driver, cuda_version=cuda)
        devices: list[GpuDevice] = []
        errors: list[str] = []
        for i in range(count):
            try:
                devices.append(_read_device(nvml, i))
            except nvml.NVMLError as exc:  # no handle or no memory figures: nothing useful left to show of it
                errors.append(_nvml_error(exc))
        if devices:
            reason = None
        elif errors:
            reason = "NVML: " + "; ".join(dict.fromkeys(errors))  # once each, in order
        else:
            reason = "the driver reports no GPU"
        return GpuFigures(devices, reason, driver, cuda)
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:  # the figures are read; a failed shutdown changes nothing for them
            pass


def _read_device(nvml: Any, index: int) -> GpuDevice:
    """One device; raises NVMLError when its handle or its memory cannot be read.

    Every other figure is read on its own and is None when NVML cannot give it.
    """
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    mem = nvml.nvmlDeviceGetMemoryInfo(h)
    util = _nvml_or_none(nvml, nvml.nvmlDeviceGetUtilizationRates, h)
    temp = _nvml_or_none(nvml, nvml.nvmlDeviceGetTemperature, h, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
    power_mw = _nvml_or_none(nvml, nvml.nvmlDeviceGetPowerUsage, h)
    # The enforced limit is what the board holds to (the lower of the management limit and others); older boards
    # only know the management limit.
    limit_mw = _nvml_or_none(nvml, nvml.nvmlDeviceGetEnforcedPowerLimit, h)
    if limit_mw is None:
        limit_mw = _nvml_or_none(nvml, nvml.nvmlDeviceGetPowerManagementLimit, h)
    return GpuDevice(
        index=index,
        name=_text(_nvml_or_none(nvml, nvml.nvmlDeviceGetName, h)) or "",
        memory_total_bytes=int(mem.total),
        memory_used_bytes=int(mem.used),
        memory_free_bytes=int(mem.free),
        utilization_percent=None if util is None else float(util.gpu),
        temperature_c=None if temp is None else float(temp),
        power_usage_w=None if power_mw is None else power_mw / 1000,
        power_limit_w=None if limit_mw is None else limit_mw / 1000,
        memory_utilization_percent=None if util is None else float(util.memory),
        uuid=_text(_nvml_or_none(nvml, nvml.nvmlDeviceGetUUID, h)),
        processes=_processes(nvml, h),
    )


def _processes(nvml: Any, handle: Any) -> list[GpuProcess]:
    """The compute and graphics processes on a device, one entry per PID, by PID; [] when NVML will not say."""
    used: dict[int, int | None] = {}
    for query in (nvml.nvmlDeviceGetComputeRunningProcesses, nvml.nvmlDeviceGetGraphicsRunningProcesses):
        for p in _nvml_or_none(nvml, query, handle) or []:
            pid = int(p.pid)
            mem = None if p.usedGpuMemory is None else int(p.usedGpuMemory)
            # A process with both a compute and a graphics context is listed twice with its one memory figure:
            # keep the larger, not the sum, so it is not counted twice.
            known = used.get(pid)
            if pid not in used or (mem is not None and (known is None or mem > known)):
                used[pid] = mem
    return [GpuProcess(pid, _process_name(pid), mem) for pid, mem in sorted(used.items())]


def _process_name(pid: int) -> str:
    """The process's name, "" when it is gone or not ours to read (NVML may report PIDs of another namespace)."""
    try:
        return psutil.Process(pid).name()
    except (psutil.Error, ValueError):  # ValueError: a PID psutil refuses (negative)
        return ""


def _cuda_version(nvml: Any) -> str | None:
    """The CUDA driver version as "12.2" (NVML says 12020), or None."""
    # _v2 asks libcuda itself; the plain call may answer with the version the driver supports. Older bindings
    # lack _v2.
    for name in ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"):
        fn = getattr(nvml, name, None)
        version = None if fn is None else _nvml_or_none(nvml, fn)
        if version is not None:
            return f"{int(version) // 1000}.{int(version) % 1000 // 10}"
    return None


def _nvml_or_none(nvml: Any, fn: Callable[..., _T], *args: Any) -> _T | None:
    """``fn(*args)``, or None when NVML cannot give that figure (not supported, no permission, GPU lost, ...)."""
    try:
        return fn(*args)
    except nvml.NVMLError:
        return None


def _text(value: str | bytes | None) -> str | None:
    """NVML strings arrive as bytes from older bindings and as str from newer ones."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _nvml_error(exc: BaseException) -> str:
    """An error in words for a ``reason``: NVML's message ("GPU is lost"), else the class name; no traceback."""
    return str(exc) or type(exc).__name__


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


def tree_rss(pid: int) -> int | None:
    """Resident memory of a process and its children (no CPU sample, so no wait); ``None`` when it is gone."""
    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except psutil.Error:
        return None


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
    return ProcessFigures(pid, rss, threads, cpu_pct, tuple(p.pid for p in procs))
