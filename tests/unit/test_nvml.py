"""llmd.core.system.gpus(): NVML figures through a fake ``pynvml`` module at the import boundary."""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass, field
from types import SimpleNamespace

import psutil
import pytest

from llmd.core import system
from llmd.core.system import GpuDevice, GpuFigures, GpuProcess

# The error codes and messages of nvidia-ml-py (pynvml.NVMLError._errcode_to_string).
NOT_SUPPORTED, NO_PERMISSION, DRIVER_NOT_LOADED, LIBRARY_NOT_FOUND, GPU_IS_LOST, UNKNOWN = 3, 4, 9, 12, 15, 999
MESSAGES = {NOT_SUPPORTED: "Not Supported", NO_PERMISSION: "Insufficient Permissions",
            DRIVER_NOT_LOADED: "Driver Not Loaded", LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
            GPU_IS_LOST: "GPU is lost", UNKNOWN: "Unknown Error"}

GIB = 1024**3


class NVMLError(Exception):
    """As pynvml's: the NVML return code in ``value``, its message as the text."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return MESSAGES.get(self.value, f"NVML Error with code {self.value}")


def proc(pid: int, used: int | None) -> SimpleNamespace:
    """A c_nvmlProcessInfo_t as pynvml hands it out (usedGpuMemory None when NVML does not know)."""
    return SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)


def gone_pid() -> int:
    """A PID no process has."""
    pid = 4_000_000
    while psutil.pid_exists(pid):
        pid += 1
    return pid


@dataclass
class Dev:
    """One fake GPU; ``fail`` maps an NVML function name to the error code it raises for this device."""

    name: str | bytes = b"NVIDIA H200"
    uuid: str | bytes = b"GPU-0a1b2c3d-0000-1111-2222-333344445555"
    total: int = 141 * GIB
    used: int = 40 * GIB
    gpu_util: int = 87
    mem_util: int = 55
    temp: int = 61
    power_mw: int = 312_500
    enforced_mw: int = 600_000
    management_mw: int = 700_000
    compute: list = field(default_factory=list)
    graphics: list = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)


class FakeNvml(types.ModuleType):
    """A stand-in for the ``pynvml`` module: the calls gpus() makes, each able to fail on demand."""

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, devices: list[Dev] | None = None, driver: str | bytes = b"550.54.15", cuda: int = 12020,
                 cuda_v1: int = 12040, fail: dict[str, Exception] | None = None) -> None:
        super().__init__("pynvml")
        self.devices = [Dev()] if devices is None else devices
        self.driver, self.cuda, self.cuda_v1 = driver, cuda, cuda_v1
        self.fail = fail or {}  # a system-wide call -> the exception it raises
        self.calls: dict[str, int] = {}
        self.live = False  # between a successful nvmlInit and nvmlShutdown

    def _call(self, fn: str, dev: Dev | None = None) -> None:
        self.calls[fn] = self.calls.get(fn, 0) + 1
        if fn not in ("nvmlInit", "nvmlShutdown") and not self.live:
            raise NVMLError(1)  # NVML_ERROR_UNINITIALIZED: a call outside init/shutdown is a bug in gpus()
        if fn in self.fail:
            raise self.fail[fn]
        if dev is not None and fn in dev.fail:
            raise NVMLError(dev.fail[fn])

    def nvmlInit(self) -> None:
        self._call("nvmlInit")
        self.live = True

    def nvmlShutdown(self) -> None:
        self.live = False
        self._call("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self._call("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._call("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._call("nvmlSystemGetCudaDriverVersion")
        return self.cuda_v1

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Dev:
        dev = self.devices[i]
        self._call("nvmlDeviceGetHandleByIndex", dev)
        return dev

    def nvmlDeviceGetName(self, h: Dev) -> str | bytes:
        self._call("nvmlDeviceGetName", h)
        return h.name

    def nvmlDeviceGetUUID(self, h: Dev) -> str | bytes:
        self._call("nvmlDeviceGetUUID", h)
        return h.uuid

    def nvmlDeviceGetMemoryInfo(self, h: Dev) -> SimpleNamespace:
        self._call("nvmlDeviceGetMemoryInfo", h)
        return SimpleNamespace(total=h.total, used=h.used, free=h.total - h.used)

    def nvmlDeviceGetUtilizationRates(self, h: Dev) -> SimpleNamespace:
        self._call("nvmlDeviceGetUtilizationRates", h)
        return SimpleNamespace(gpu=h.gpu_util, memory=h.mem_util)

    def nvmlDeviceGetTemperature(self, h: Dev, sensor: int) -> int:
        self._call("nvmlDeviceGetTemperature", h)
        assert sensor == self.NVML_TEMPERATURE_GPU
        return h.temp

    def nvmlDeviceGetPowerUsage(self, h: Dev) -> int:
        self._call("nvmlDeviceGetPowerUsage", h)
        return h.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Dev) -> int:
        self._call("nvmlDeviceGetEnforcedPowerLimit", h)
        return h.enforced_mw

    def nvmlDeviceGetPowerManagementLimit(self, h: Dev) -> int:
        self._call("nvmlDeviceGetPowerManagementLimit", h)
        return h.management_mw

    def nvmlDeviceGetComputeRunningProcesses(self, h: Dev) -> list:
        self._call("nvmlDeviceGetComputeRunningProcesses", h)
        return h.compute

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: Dev) -> list:
        self._call("nvmlDeviceGetGraphicsRunningProcesses", h)
        return h.graphics


@pytest.fixture
def install(monkeypatch):
    """Put a fake pynvml in sys.modules for gpus() to import."""
    def put(fake: FakeNvml) -> FakeNvml:
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake
    return put


def read(fake: FakeNvml) -> GpuFigures:
    """gpus() against ``fake``, checking that NVML is shut down exactly once after a successful init (never
    without one), and that nothing was left initialised."""
    figures = system.gpus()
    assert fake.calls.get("nvmlInit") == 1
    init_failed = "nvmlInit" in fake.fail
    assert fake.calls.get("nvmlShutdown", 0) == (0 if init_failed else 1)
    assert not fake.live
    return figures


def only(figures: GpuFigures) -> GpuDevice:
    assert figures.reason is None and len(figures.devices) == 1
    return figures.devices[0]


# -- the full figures --------------------------------------------------------------------------------------------

def test_full_figures(install):
    me, gone = os.getpid(), gone_pid()
    fake = install(FakeNvml([
        Dev(compute=[proc(me, 2 * GIB), proc(gone, 512 * 1024**2)], graphics=[proc(me, 3 * GIB)]),
        Dev(name="NVIDIA A100-SXM4-80GB", uuid="GPU-ffff", total=80 * GIB, used=0, gpu_util=0, mem_util=0,
            temp=34, power_mw=61_234, enforced_mw=400_000),
    ]))
    figures = read(fake)

    assert figures.available and figures.reason is None
    assert figures.driver_version == "550.54.15"
    assert figures.cuda_version == "12.2"  # 12020, from _v2
    first, second = figures.devices
    assert first == GpuDevice(
        index=0, name="NVIDIA H200", memory_total_bytes=141 * GIB, memory_used_bytes=40 * GIB,
        memory_free_bytes=101 * GIB, utilization_percent=87.0, temperature_c=61.0, power_usage_w=312.5,
        power_limit_w=600.0, memory_utilization_percent=55.0, uuid="GPU-0a1b2c3d-0000-1111-2222-333344445555",
        # The process in both lists once, with the larger figure; by PID; a gone process has no name.
        processes=[GpuProcess(me, psutil.Process().name(), 3 * GIB), GpuProcess(gone, "", 512 * 1024**2)])
    assert first.processes[0].name  # the test process has a real name
    assert isinstance(first.temperature_c, float) and isinstance(first.memory_total_bytes, int)
    # str (newer bindings) as well as bytes
    assert (second.index, second.name, second.uuid) == (1, "NVIDIA A100-SXM4-80GB", "GPU-ffff")
    assert (second.memory_used_bytes, second.memory_free_bytes) == (0, 80 * GIB)
    assert (second.utilization_percent, second.power_usage_w, second.power_limit_w) == (0.0, 61.234, 400.0)
    assert second.processes == []
    # the management limit is only asked for when the enforced one cannot be read
    assert "nvmlDeviceGetPowerManagementLimit" not in fake.calls


def test_gpus_imports_pynvml_when_called(install):
    # gpus() imports pynvml inside the function: no module-level name, and a module swapped in later is used.
    assert not hasattr(system, "pynvml")
    install(FakeNvml(driver="535.1"))
    assert system.gpus().driver_version == "535.1"
    install(FakeNvml(driver="550.2"))
    assert system.gpus().driver_version == "550.2"


def test_used_gpu_memory_not_available(install):
    me = os.getpid()
    fake = install(FakeNvml([Dev(compute=[proc(me, None)], graphics=[proc(me, None), proc(1, None)])]))
    dev = only(read(fake))
    assert [(p.pid, p.memory_bytes) for p in dev.processes] == [(1, None), (me, None)]


def test_processes_merge_keeps_a_known_memory_figure(install):
    me = os.getpid()
    fake = install(FakeNvml([Dev(compute=[proc(me, None)], graphics=[proc(me, GIB)])]))
    assert only(read(fake)).processes == [GpuProcess(me, psutil.Process().name(), GIB)]


# -- NVML cannot be used at all ----------------------------------------------------------------------------------

def test_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert system.gpus() == GpuFigures(reason="nvidia-ml-py is not installed: no GPU figures")


@pytest.mark.parametrize(("code", "text"), [(LIBRARY_NOT_FOUND, "NVML Shared Library Not Found"),
                                            (DRIVER_NOT_LOADED, "Driver Not Loaded")])
def test_init_fails(install, code, text):
    fake = install(FakeNvml(fail={"nvmlInit": NVMLError(code)}))
    figures = read(fake)
    assert figures == GpuFigures(reason=f"no NVIDIA GPU or driver: {text}")
    assert not figures.available
    assert set(fake.calls) == {"nvmlInit"}  # nothing else asked, no shutdown without an init


def test_count_fails(install):
    fake = install(FakeNvml(fail={"nvmlDeviceGetCount": NVMLError(UNKNOWN)}))
    figures = read(fake)
    assert figures.devices == [] and figures.reason == "NVML: Unknown Error"
    assert figures.driver_version == "550.54.15"  # what could be read still is


def test_zero_devices(install):
    fake = install(FakeNvml([]))
    figures = read(fake)
    assert figures == GpuFigures(reason="the driver reports no GPU", driver_version="550.54.15", cuda_version="12.2")


def test_unexpected_error_is_a_reason_not_an_exception(install):
    # Not an NVMLError (a binding gone wrong): the outer boundary turns it into a reason, and NVML is still shut down.
    fake = install(FakeNvml(fail={"nvmlDeviceGetCount": RuntimeError("ctypes said no")}))
    figures = read(fake)
    assert figures.devices == [] and figures.reason == "NVML: ctypes said no"


# -- a device that cannot be read --------------------------------------------------------------------------------

def test_handle_fails_for_one_of_two(install):
    fake = install(FakeNvml([Dev(fail={"nvmlDeviceGetHandleByIndex": GPU_IS_LOST}), Dev(name=b"second")]))
    figures = read(fake)
    assert figures.reason is None
    assert [(d.index, d.name) for d in figures.devices] == [(1, "second")]


def test_every_device_fails(install):
    fake = install(FakeNvml([Dev(fail={"nvmlDeviceGetHandleByIndex": GPU_IS_LOST}),
                             Dev(fail={"nvmlDeviceGetMemoryInfo": GPU_IS_LOST}),
                             Dev(fail={"nvmlDeviceGetMemoryInfo": NO_PERMISSION})]))
    figures = read(fake)
    assert figures.devices == [] and not figures.available
    assert figures.reason == "NVML: GPU is lost; Insufficient Permissions"  # each error once
    assert "Traceback" not in figures.reason and "NVMLError" not in figures.reason


def test_memory_fails(install):
    fake = install(FakeNvml([Dev(name=b"bad", fail={"nvmlDeviceGetMemoryInfo": UNKNOWN}), Dev(name=b"good")]))
    figures = read(fake)
    assert [(d.index, d.name) for d in figures.devices] == [(1, "good")]


# -- one figure that cannot be read ------------------------------------------------------------------------------

def test_utilization_fails(install):
    dev = only(read(install(FakeNvml([Dev(fail={"nvmlDeviceGetUtilizationRates": NOT_SUPPORTED})]))))
    assert dev.utilization_percent is None and dev.memory_utilization_percent is None
    assert dev.memory_used_bytes == 40 * GIB and dev.temperature_c == 61.0 and dev.power_usage_w == 312.5


def test_temperature_not_supported(install):
    dev = only(read(install(FakeNvml([Dev(fail={"nvmlDeviceGetTemperature": NOT_SUPPORTED})]))))
    assert dev.temperature_c is None
    assert dev.utilization_percent == 87.0 and dev.power_usage_w == 312.5


def test_power_not_supported(install):
    dev = only(read(install(FakeNvml([Dev(fail={"nvmlDeviceGetPowerUsage": NOT_SUPPORTED})]))))
    assert dev.power_usage_w is None
    assert dev.power_limit_w == 600.0 and dev.temperature_c == 61.0


def test_enforced_limit_falls_back_to_management_limit(install):
    fake = install(FakeNvml([Dev(fail={"nvmlDeviceGetEnforcedPowerLimit": NOT_SUPPORTED})]))
    assert only(read(fake)).power_limit_w == 700.0
    assert fake.calls["nvmlDeviceGetPowerManagementLimit"] == 1


def test_no_power_limit_at_all(install):
    fake = install(FakeNvml([Dev(fail={"nvmlDeviceGetEnforcedPowerLimit": NOT_SUPPORTED,
                                       "nvmlDeviceGetPowerManagementLimit": NOT_SUPPORTED})]))
    dev = only(read(fake))
    assert dev.power_limit_w is None and dev.power_usage_w == 312.5


def test_processes_no_permission(install):
    me = os.getpid()
    fake = install(FakeNvml([Dev(compute=[proc(me, GIB)], graphics=[proc(me, GIB)],
                                 fail={"nvmlDeviceGetComputeRunningProcesses": NO_PERMISSION,
                                       "nvmlDeviceGetGraphicsRunningProcesses": NO_PERMISSION})]))
    dev = only(read(fake))
    assert dev.processes == []
    assert dev.utilization_percent == 87.0  # the rest still reports


def test_one_process_list_fails(install):
    me = os.getpid()
    fake = install(FakeNvml([Dev(compute=[proc(me, GIB)], graphics=[proc(me, 2 * GIB)],
                                 fail={"nvmlDeviceGetComputeRunningProcesses": NO_PERMISSION})]))
    assert [(p.pid, p.memory_bytes) for p in only(read(fake)).processes] == [(me, 2 * GIB)]


def test_name_and_uuid_fail(install):
    dev = only(read(install(FakeNvml([Dev(fail={"nvmlDeviceGetName": GPU_IS_LOST,
                                                "nvmlDeviceGetUUID": NOT_SUPPORTED})]))))
    assert dev.name == "" and dev.uuid is None
    assert dev.memory_total_bytes == 141 * GIB


def test_process_name_unreadable(monkeypatch, install):
    def denied(pid):
        raise psutil.AccessDenied(pid)
    monkeypatch.setattr(system.psutil, "Process", denied)
    dev = only(read(install(FakeNvml([Dev(compute=[proc(1, GIB)])]))))
    assert dev.processes == [GpuProcess(1, "", GIB)]


# -- system figures and shutdown ---------------------------------------------------------------------------------

def test_shutdown_error_is_swallowed(install):
    fake = install(FakeNvml(fail={"nvmlShutdown": NVMLError(UNKNOWN)}))
    dev = only(read(fake))
    assert dev.name == "NVIDIA H200" and dev.power_usage_w == 312.5


def test_driver_version_fails(install):
    figures = read(install(FakeNvml(fail={"nvmlSystemGetDriverVersion": NVMLError(UNKNOWN)})))
    assert figures.driver_version is None
    assert figures.cuda_version == "12.2" and len(figures.devices) == 1


def test_cuda_version_falls_back_to_v1(install):
    fake = install(FakeNvml(fail={"nvmlSystemGetCudaDriverVersion_v2": NVMLError(LIBRARY_NOT_FOUND)}))
    assert read(fake).cuda_version == "12.4"  # 12040


def test_cuda_version_without_v2_in_the_binding(monkeypatch, install):
    monkeypatch.delattr(FakeNvml, "nvmlSystemGetCudaDriverVersion_v2")  # an older nvidia-ml-py
    assert read(install(FakeNvml(cuda_v1=11080))).cuda_version == "11.8"


def test_cuda_version_fails(install):
    fake = install(FakeNvml(fail={"nvmlSystemGetCudaDriverVersion_v2": NVMLError(NOT_SUPPORTED),
                                  "nvmlSystemGetCudaDriverVersion": NVMLError(NOT_SUPPORTED)}))
    figures = read(fake)
    assert figures.cuda_version is None and figures.driver_version == "550.54.15"


# -- the readers of these figures --------------------------------------------------------------------------------

def test_existing_constructors_still_work():
    dev = GpuDevice(0, "g", 10, 4, 6, 50.0)
    assert (dev.temperature_c, dev.power_usage_w, dev.power_limit_w, dev.uuid, dev.processes) == (
        None, None, None, None, [])
    assert GpuFigures() == GpuFigures([], None, None, None) and not GpuFigures().available


def test_api_translation_takes_the_new_figures(install):
    from llmd.http.llm_manager import translate

    fake = install(FakeNvml([Dev(fail={"nvmlDeviceGetUtilizationRates": NOT_SUPPORTED}), Dev()]))
    res = system.SystemResources(system.CpuFigures(1.0, 1, 1), system.MemoryFigures(1, 1, 0, 100.0),
                                 system.DiskFigures("/", 1, 1, 0), read(fake))
    gpu = translate.resources(res)["gpu"]
    assert gpu["available"] is True and "reason" not in gpu
    assert [d["utilization_percent"] for d in gpu["devices"]] == [None, 87.0]
    assert gpu["devices"][1]["memory_total_gb"] == translate.gib(141 * GIB)
