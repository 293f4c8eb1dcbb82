"""The operations dialect of seed 002: the model registry and lifecycle, tokens.

Its routes live in one module per area; each has ``register(d, core)``.
"""

from __future__ import annotations

from llmd.core import Core
from llmd.http.api import Dialect
from llmd.http.ops import auth_routes, model_routes
from llmd.http.ops.envelope import render_error


def build(core: Core) -> Dialect:
    """The ops dialect with every seed-002 route."""
    d = Dialect("ops", "Model operations (seed 002)", render_error,
                prefixes=("/api/models", "/api/auth/", "/api/tasks/"))
    for module in (auth_routes, model_routes):
        module.register(d, core)
    return d
