"""Seed 004 routes: API health and system figures (psutil; pynvml when present).

``GET /health`` is shared with seed 003 and served by the local dialect
(API-MAP.md); this module serves ``/api/health`` and ``/api/system/*``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from quart import jsonify

from llmd import __version__
from llmd.core import Core, monitor
from llmd.core.types import DeploymentState
from llmd.http.api import Dialect
from llmd.http.manager.envelope import ok


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the manager dialect."""

    @d.route("/api/health", summary="API health", auth="public")
    async def api_health() -> Any:
        """Seed 004's API health: ``{"status": "healthy", "api_version", "service"}`` (not enveloped, as the seed shows)."""
        return jsonify({"status": "healthy", "api_version": "v1", "service": "llmd", "version": __version__})

    @d.route("/api/system/resources", summary="System resources", auth="admin")
    async def resources() -> Any:
        """CPU, memory, disk (the file system of the models directory) and GPU (``available: false`` without one)."""
        data = await asyncio.to_thread(monitor.resources, core.config.models_dir)
        return ok(data, "system resources")

    @d.route("/api/system/load", summary="System load", auth="admin")
    async def load() -> Any:
        """Load averages, per-core CPU use, this process, and llmd's own load: deployments, queues, streams."""
        data = await asyncio.to_thread(monitor.load)
        deps = [dep.stats() for dep in list(core.deployments.values())]
        data["llmd"] = {
            "deployments_running": sum(1 for s in deps if s["state"] == DeploymentState.RUNNING.value),
            "generations_active": sum(s.get("active", 0) for s in deps),
            "generations_queued": sum(s.get("queued", 0) for s in deps),
            "active_streams": core.active_streams,
        }
        return ok(data, "system load")

    @d.route("/api/system/health", summary="System health", auth="admin")
    async def system_health() -> Any:
        """Checks of the store, the free disk of the models directory and the engine; ``status`` is
        ``healthy``, ``degraded`` (a warning) or ``unhealthy`` (a check failed)."""
        checks: dict[str, Any] = {}
        store_ok = await core.store.check()
        checks["store"] = {"status": "ok" if store_ok else "error", "path": str(core.config.db_path)}
        margin = core.config.downloads.disk_margin_mb
        try:
            du = await asyncio.to_thread(monitor.disk_usage, core.config.models_dir)
            free_mb = du.free // (1 << 20)
            checks["disk"] = {"status": "ok" if free_mb >= margin else "warning", "path": str(core.config.models_dir),
                              "free_mb": free_mb, "margin_mb": margin}
        except OSError as exc:
            checks["disk"] = {"status": "error", "path": str(core.config.models_dir), "message": exc.strerror}
        dep = core.default_deployment()
        engine_state = dep.state.value if dep is not None else DeploymentState.STOPPED.value
        checks["engine"] = {
            "status": "error" if engine_state == DeploymentState.ERROR.value or core.shutting_down else "ok",
            "engine": core.engine.name, "default_model": core.config.models.default,
            "default_model_state": engine_state,
            "deployments_running": sum(1 for x in list(core.deployments.values())
                                       if x.state is DeploymentState.RUNNING),
        }
        states = {c["status"] for c in checks.values()}
        status = "unhealthy" if "error" in states else "degraded" if "warning" in states else "healthy"
        return ok({"status": status, "checks": checks, "version": __version__}, f"system is {status}")
