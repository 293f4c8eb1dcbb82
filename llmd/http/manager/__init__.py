"""The model-manager dialect of seed 004: hub search, downloads, deployments, system.

Its routes live in one module per area; each has ``register(d, core)``.
"""

from __future__ import annotations

from llmd.core import Core
from llmd.http.api import Dialect
from llmd.http.manager import deployment_routes, download_routes, hub_routes, system_routes
from llmd.http.manager.envelope import render_error

# Static segments of /api/models/... that belong to seed 004, not to seed 002's registry ids.
HUB_PATHS = ("/api/models/search", "/api/models/categories", "/api/models/trending",
             "/api/models/stats", "/api/models/sync")


def build(core: Core) -> Dialect:
    """The manager dialect with every seed-004 route."""
    d = Dialect("manager", "Model manager (seed 004)", render_error,
                prefixes=("/api/downloads", "/api/deployments", "/api/chat/", "/api/completions/",
                          "/api/system/resources", "/api/system/load", "/api/system/health", "/ws/downloads"),
                paths=("/api/health", *HUB_PATHS),
                patterns=(r"/api/models/.+/(info|favorite)",))
    for module in (system_routes, hub_routes, download_routes, deployment_routes):
        module.register(d, core)
    return d
