"""The metrics history: the box and its deployments, sampled every ``monitor.interval_s`` into SQLite.

Each sample (CPU, memory, disk, load, this process, each GPU, each running
deployment's queue and slots) is one transaction of the store's
``metrics`` repository, which also rolls it up into 1 m, 5 m, 1 h and 1 d
buckets. The blocking reads (psutil, NVML) run in a thread; the writes go
through aiosqlite's thread: the event loop never waits on either. Once an
hour each resolution is pruned to its retention.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from llmd.config import MonitorConfig
from llmd.core import system
from llmd.core.background import Background
from llmd.core.fleet import Fleet
from llmd.core.types import DeploymentState
from llmd.store.metrics import RAW, MetricsRepo

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
Sample = dict[tuple[str, str], float]


def box_values(models_dir: Path) -> Sample:
    """The machine's figures, ``(metric, subject) -> value`` (blocking: psutil and NVML)."""
    res = system.resources(models_dir)
    load = system.machine_load()
    out: Sample = {
        ("cpu_percent", ""): res.cpu.usage_percent,
        ("memory_used_bytes", ""): float(res.memory.used_bytes),
        ("memory_percent", ""): res.memory.usage_percent,
        ("disk_used_bytes", ""): float(res.disk.used_bytes),
        ("disk_percent", ""): res.disk.usage_percent,
        ("load_1m", ""): load.load_1m,
        ("process_rss_bytes", ""): float(load.process.rss_bytes),
    }
    for gpu in res.gpu.devices:
        subject = f"gpu{gpu.index}"
        out[("gpu_utilization", subject)] = gpu.utilization_percent
        out[("gpu_memory_used_bytes", subject)] = float(gpu.memory_used_bytes)
    return out


class History:
    """Samples into the metrics history on a timer, and prunes it."""

    def __init__(self, config: MonitorConfig, repo: MetricsRepo, fleet: Fleet, background: Background,
                 models_dir: Path) -> None:
        self.config = config  # read at every tick: a changed interval applies from the next sample
        self.repo = repo
        self.fleet = fleet
        self.background = background
        self.models_dir = models_dir
        self.samples = 0
        self.failures = 0
        self.last_sample_s = 0.0  # how long the last sample took (reads and write)
        self._task: asyncio.Task | None = None
        self._last_prune = 0.0

    def start(self) -> None:
        """Begin sampling (the first sample at once); ``monitor.interval_s`` 0 keeps no history."""
        if self._task is None and self.config.interval_s > 0:
            self._task = self.background.spawn(self._run())

    async def stop(self) -> None:
        """Stop sampling; a sample being written is finished or rolled back, never half-written."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def deployment_values(self) -> Sample:
        """Each running deployment's queue and busy slots."""
        out: Sample = {}
        for dep in self.fleet.live():
            info = dep.info()
            if info.state is not DeploymentState.RUNNING:
                continue
            out[("queue_depth", info.deployment_id)] = float(info.queued)
            out[("active_slots", info.deployment_id)] = float(info.active)
        return out

    async def sample_once(self, now: float | None = None) -> Sample:
        """Take one sample and write it; returns what was written."""
        started = time.monotonic()
        values = await asyncio.to_thread(box_values, self.models_dir)
        values.update(self.deployment_values())
        await self.repo.add_sample(time.time() if now is None else now, values)
        self.samples += 1
        self.last_sample_s = time.monotonic() - started
        return values

    async def prune(self, now: float | None = None) -> int:
        """Drop what is older than each resolution's retention (0: kept forever)."""
        c = self.config
        keep = {RAW: c.keep_raw_h * 3600, 60: c.keep_1m_d * 86400, 300: c.keep_5m_d * 86400,
                3600: c.keep_1h_d * 86400, 86400: c.keep_1d_d * 86400}
        return await self.repo.prune({res: s for res, s in keep.items() if s > 0},
                                     time.time() if now is None else now)

    async def _run(self) -> None:
        while not self.background.stopping:
            try:
                await self.sample_once()
                if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
                    self._last_prune = time.monotonic()
                    await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failed sample is logged and counted; the next one comes
                self.failures += 1
                log.exception("metrics sample failed")
            await asyncio.sleep(max(0.1, self.config.interval_s))
