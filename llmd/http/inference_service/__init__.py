"""The LLM Inference Service API: the model registry and lifecycle, per-model inference, tokens, monitoring,
system status, runtime configuration, alerts and the ``/ws/monitor`` WebSocket.

Its routes live in one module per area; each has ``register(d, core)``.
"""

from __future__ import annotations

from llmd.core import Core
from llmd.http.inference_service import (
    alert_routes,
    auth_routes,
    config_routes,
    model_routes,
    monitoring_routes,
    system_routes,
    ws_routes,
)
from llmd.http.inference_service.envelope import ERROR_SCHEMA, render_error
from llmd.http.routing import Dialect


def build(core: Core) -> Dialect:
    """The LLM Inference Service API with every route."""
    d = Dialect("inference_service", "LLM Inference Service API", render_error, ERROR_SCHEMA,
                # /api/system/resources, /load and /health (and below them) are the LLM Manager API's: its
                # exact paths and longer prefixes win.
                prefixes=("/api/models", "/api/auth/", "/api/tasks/", "/api/monitoring/", "/api/system/",
                          "/api/config/"),
                paths=("/api/system", "/api/config", "/ws/monitor"))
    for module in (auth_routes, model_routes, monitoring_routes, system_routes, config_routes, alert_routes,
                   ws_routes):
        module.register(d, core)
    return d
