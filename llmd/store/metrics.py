"""SQL for the metrics history: raw samples and their 1 m, 5 m, 1 h and 1 d rollups.

A sample is written with its rollups in one transaction, so after a crash or
``kill -9`` it is in every resolution or in none. A rollup bucket keeps the
average, minimum, maximum and count of the samples that fell in it; the
average is updated as a running mean, so no raw sample is needed to extend a
bucket and each resolution can be pruned on its own retention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from llmd.store.db import Store

# Seconds per bucket of each rollup; 0 is the raw resolution.
RAW = 0
ROLLUPS = (60, 300, 3600, 86400)


@dataclass(frozen=True)
class MetricPoint:
    """One bucket (or raw sample) of one metric of one subject."""

    ts: float
    avg: float
    min: float
    max: float
    count: int


class MetricsRepo:
    """The metrics history (``metric_points``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add_sample(self, ts: float, values: Mapping[tuple[str, str], float]) -> None:
        """Record one sample, ``(metric, subject) -> value``, raw and in every rollup, atomically."""
        raw = [(RAW, ts, metric, subject, v, v, v, 1) for (metric, subject), v in values.items()]
        rolled = [(res, ts - ts % res, metric, subject, v, v, v, 1)
                  for res in ROLLUPS for (metric, subject), v in values.items()]
        async with self.store.transaction() as db:
            await db.executemany(
                "INSERT OR REPLACE INTO metric_points(resolution, ts, metric, subject, avg, min, max, count)"
                " VALUES (?,?,?,?,?,?,?,?)", raw)
            await db.executemany(
                "INSERT INTO metric_points(resolution, ts, metric, subject, avg, min, max, count)"
                " VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT(resolution, metric, subject, ts) DO UPDATE SET"
                " avg = (avg * count + excluded.avg) / (count + 1),"
                " min = MIN(min, excluded.min), max = MAX(max, excluded.max), count = count + 1",
                rolled)

    async def points(self, metric: str, subject: str, *, resolution: int, start: float,
                     end: float) -> list[MetricPoint]:
        """The buckets of ``metric`` for ``subject`` whose start lies in ``[start, end]``, oldest first."""
        rows = await self.store.fetchall(
            "SELECT ts, avg, min, max, count FROM metric_points"
            " WHERE resolution=? AND metric=? AND subject=? AND ts >= ? AND ts <= ? ORDER BY ts",
            (resolution, metric, subject, start, end))
        return [MetricPoint(r["ts"], r["avg"], r["min"], r["max"], r["count"]) for r in rows]

    async def subjects(self, metric: str, *, resolution: int, start: float, end: float) -> list[str]:
        """The subjects that have ``metric`` in the window (the deployments, the GPUs, ...)."""
        rows = await self.store.fetchall(
            "SELECT DISTINCT subject FROM metric_points"
            " WHERE resolution=? AND metric=? AND ts >= ? AND ts <= ? ORDER BY subject",
            (resolution, metric, start, end))
        return [r["subject"] for r in rows]

    async def prune(self, keep_s: Mapping[int, float], now: float) -> int:
        """Delete, per resolution, the buckets older than its retention in seconds; how many went."""
        gone = 0
        async with self.store.transaction() as db:
            for resolution, seconds in keep_s.items():
                cur = await db.execute("DELETE FROM metric_points WHERE resolution=? AND ts < ?",
                                       (resolution, now - seconds))
                gone += cur.rowcount
        return gone

    async def count(self) -> int:
        """Rows in the history (all resolutions)."""
        row = await self.store.fetchone("SELECT COUNT(*) AS n FROM metric_points")
        return int(row["n"]) if row else 0
