"""Routes of the llmd admin API (status and registry), used by llmctl."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field
from quart import Response, jsonify, request

from llmd.core import Core
from llmd.errors import LlmdError
from llmd.http.admin import access_routes
from llmd.http.admin import translate as t
from llmd.http.body import parse_body, parse_query
from llmd.http.fields import ModelName, StrictModel
from llmd.http.routing import Dialect

ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}}


class RestorePart(StrictModel):
    """``PUT /llmd/v1/restore``."""

    offset: int = Field(ge=0, le=1 << 50, description="Where this part goes in the file; 0 starts again.")


class RestoreCommit(StrictModel):
    """``POST /llmd/v1/restore/commit``."""

    size: int = Field(ge=1, le=1 << 50, description="The file's size in bytes.")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="The file's SHA-256, hex.",
                        examples=["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"])


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

    @d.route("/llmd/v1/backup", summary="Back up the database", text=True, auth="admin")
    async def backup() -> Any:
        """A consistent copy of the SQLite database (the online backup API), as ``application/vnd.sqlite3``."""
        export = await core.backups.export()
        return Response(export.chunks, content_type="application/vnd.sqlite3", headers={
            "Content-Length": str(export.size_bytes),
            "Content-Disposition": f'attachment; filename="{export.name}"'})

    @d.route("/llmd/v1/restore", ("PUT",), summary="Upload a part of a database to restore", query=RestorePart,
             auth="admin")
    async def restore_part() -> Any:
        """The body (``application/octet-stream``, at most server.max_body_bytes) is the file's bytes from
        ``offset``; ``offset=0`` starts again. Answers the bytes received so far."""
        q = parse_query(RestorePart)
        received = await core.backups.restore_part(q.offset, await request.get_data())
        return jsonify({"received_bytes": received})

    @d.route("/llmd/v1/restore/commit", ("POST",), summary="Restore the uploaded database", body=RestoreCommit,
             auth="admin")
    async def restore_commit() -> Any:
        """Checks the upload (size, SHA-256, SQLite integrity, llmd's schema) and restarts llmd, which puts it in
        place of the database in use (kept under backups/). 202 once staged."""
        body = await parse_body(RestoreCommit)
        staged = await core.backups.restore_commit(body.size, body.sha256)
        return jsonify({"staged": True, "restarting": staged.restarting, "size_bytes": staged.info.size_bytes,
                        "migrations": len(staged.info.migrations)}), 202

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
