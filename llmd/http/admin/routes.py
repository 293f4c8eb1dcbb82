"""Routes of the llmd admin API (status and registry), used by llmctl."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field
from quart import jsonify

from llmd.core import Core
from llmd.errors import LlmdError
from llmd.http.admin import access_routes
from llmd.http.admin import translate as t
from llmd.http.body import parse_body
from llmd.http.fields import ModelName, StrictModel
from llmd.http.routing import Dialect

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}}


class AddModelBody(StrictModel):
    """``POST /llmd/v1/models``: register a local GGUF file."""

    path: str = Field(min_length=1, max_length=4096, description="Absolute path of a GGUF file readable by the daemon.")
    name: Optional[ModelName] = Field(default=None, description="The registry name; default: from the file name.")


def render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    """``{"error": {"code", "message", "details"}}`` with the core's code."""
    return {"error": {"code": err.code, "message": err.message, "details": err.details}}, err.status


def build(core: Core) -> Dialect:
    """The admin API bound to ``core``."""
    d = Dialect("admin", "llmd Admin API", render_error, ERROR_SCHEMA, prefixes=("/llmd/",))

    @d.route("/llmd/v1/status", summary="Daemon status", auth="admin")
    async def status() -> Any:
        """Version, health, deployments, memory and request totals."""
        return jsonify(t.status(await core.monitor.status()))

    @d.route("/llmd/v1/models", summary="List registered models", auth="admin")
    async def models() -> Any:
        """Every registered model with its state."""
        return jsonify({"models": [t.model(v) for v in await core.models.list()]})

    @d.route("/llmd/v1/models", ("POST",), summary="Register a local GGUF file", body=AddModelBody,
             auth="admin")
    async def add_model() -> Any:
        """Reads the file's GGUF header; 400 if it is not GGUF, 409 if the name is taken."""
        body = await parse_body(AddModelBody)
        return jsonify({"model": t.model_fields(await core.models.add_file(body.path, body.name))}), 201

    access_routes.register(d, core)
    return d
