"""Routes of the admin dialect (status and registry), used by llmctl."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field
from quart import jsonify

from llmd.core import Core
from llmd.errors import LlmdError
from llmd.http.admin import access_routes
from llmd.http.api import Dialect, StrictModel, parse_body


class AddModelBody(StrictModel):
    """``POST /llmd/v1/models``: register a local GGUF file."""

    path: str = Field(min_length=1, description="Absolute path of a GGUF file readable by the daemon.")
    name: Optional[str] = Field(default=None, min_length=1, max_length=128)


def _render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    return {"error": {"code": err.code, "message": err.message, "details": err.details}}, err.status


def build(core: Core) -> Dialect:
    """The admin dialect bound to ``core``."""
    d = Dialect("admin", "llmd admin", _render_error, prefixes=("/llmd/",))

    @d.route("/llmd/v1/status", summary="Daemon status", auth="admin")
    async def status() -> Any:
        """Version, health, deployments, memory and request totals."""
        return jsonify(await core.status())

    @d.route("/llmd/v1/models", summary="List registered models", auth="admin")
    async def models() -> Any:
        """Every registered model with its state."""
        return jsonify({"models": await core.list_models()})

    @d.route("/llmd/v1/models", ("POST",), summary="Register a local GGUF file", body=AddModelBody,
             auth="admin")
    async def add_model() -> Any:
        """Reads the file's GGUF header; 400 if it is not GGUF, 409 if the name is taken."""
        body = await parse_body(AddModelBody)
        model = await core.add_model(body.path, body.name)
        return jsonify({"model": model.to_dict()}), 201

    access_routes.register(d, core)
    return d
