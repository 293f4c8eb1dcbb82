"""The LLM Manager API: hub search, downloads, deployments, system.

Its routes live in one module per area; each has ``register(d, core)``.
"""

from __future__ import annotations

from llmd.core import Core
from llmd.http.llm_manager import deployment_routes, download_routes, hub_routes, system_routes
from llmd.http.llm_manager.envelope import ERROR_SCHEMA, render_error
from llmd.http.routing import Dialect


def build(core: Core) -> Dialect:
    """The LLM Manager API with every route."""
    d = Dialect("llm_manager", "LLM Manager API", render_error, ERROR_SCHEMA,
                prefixes=("/api/downloads", "/api/deployments", "/api/chat/", "/api/completions/",
                          "/api/system/resources/", "/api/system/load/", "/api/system/health/", "/ws/downloads"),
                paths=("/api/health", "/api/system/resources", "/api/system/load", "/api/system/health",
                       "/api/models/search", "/api/models/categories", "/api/models/trending",
                       "/api/models/stats", "/api/models/sync"),
                # Hub ids hold slashes (owner/repo): every path under /api/models/ that ends in
                # /info or /favorite is this API's, whatever its segments hold.
                patterns=(r"/api/models/.+/(info|favorite)",))
    for module in (system_routes, hub_routes, download_routes, deployment_routes):
        module.register(d, core)
    return d
