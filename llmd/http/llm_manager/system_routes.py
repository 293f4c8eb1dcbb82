"""LLM Manager API routes: API health and system figures.

``GET /health`` is shared with the LLaMA Local API and served there
(docs/api.md); this module serves ``/api/health`` and ``/api/system/*``.
"""

from __future__ import annotations

from typing import Any

from quart import jsonify

from llmd import __version__
from llmd.core import Core
from llmd.http.llm_manager import translate as t
from llmd.http.llm_manager.envelope import ok
from llmd.http.routing import Dialect


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the LLM Manager API."""

    @d.route("/api/health", summary="API health", auth="public")
    async def api_health() -> Any:
        """The API's health: ``{"status": "healthy", "api_version", "service"}`` (not enveloped, as the
        document shows)."""
        return jsonify({"status": "healthy", "api_version": "v1", "service": "llmd", "version": __version__})

    @d.route("/api/system/resources", summary="System resources", auth="admin")
    async def resources() -> Any:
        """CPU, memory, disk (the file system of the models directory) and GPU (``available: false`` without one)."""
        return ok(t.resources(await core.monitor.resources()), "system resources")

    @d.route("/api/system/load", summary="System load", auth="admin")
    async def load() -> Any:
        """Load averages, per-core CPU use, this process, and llmd's own load: deployments, queues, streams."""
        return ok(t.load(await core.monitor.load()), "system load")

    @d.route("/api/system/health", summary="System health", auth="admin")
    async def system_health() -> Any:
        """Checks of the store, the free disk of the models directory and the engine; ``status`` is
        ``healthy``, ``degraded`` (a warning) or ``unhealthy`` (a check failed)."""
        health = await core.monitor.system_health()
        return ok(t.system_health(health), f"system is {health.status}")
