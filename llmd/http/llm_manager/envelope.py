"""The LLM Manager API's envelopes.

Success: ``{"success": true, "message", "data", "code", "timestamp"}``.
Error: ``{"success": false, "message", "error": "CODE", "timestamp"}``, with
the document's codes (``MODEL_NOT_FOUND``, ``DEPLOYMENT_NOT_RUNNING``, ...).
"""

from __future__ import annotations

from typing import Any

from quart import Response, jsonify

from llmd.errors import LlmdError
from llmd.http.format import timestamp

# Core codes whose name in this API differs from the upper-cased core code.
_CODES = {
    "model_not_loaded": "DEPLOYMENT_NOT_RUNNING",
    "invalid_json": "INVALID_REQUEST",
    "context_length_exceeded": "INVALID_REQUEST",
    "download_not_found": "TASK_NOT_FOUND",
}

ERROR_SCHEMA = {"type": "object", "required": ["success", "message", "error"], "properties": {
    "success": {"const": False}, "message": {"type": "string"}, "error": {"type": "string"},
    "timestamp": {"type": "string"}}}


def error_code(err: LlmdError) -> str:
    """This API's code for a core error."""
    return _CODES.get(err.code, err.code.upper())


def render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    """The error envelope and status; ``details`` (figures, the field) ride along when known."""
    body: dict[str, Any] = {"success": False, "message": err.message, "error": error_code(err),
                            "timestamp": timestamp()}
    if err.details is not None:
        body["details"] = err.details
    if err.field:
        body["field"] = err.field
    return body, err.status


def ok(data: Any = None, message: str = "ok", status: int = 200) -> Response:
    """A success envelope as a response with ``status``."""
    resp = jsonify({"success": True, "message": message, "data": data, "code": status, "timestamp": timestamp()})
    resp.status_code = status
    return resp
