"""The LLM Inference Service API's error envelope.

``{"error": {"code", "message", "details"}, "timestamp", "path"}``, with the document's codes.
"""

from __future__ import annotations

from typing import Any

from llmd.errors import LlmdError
from llmd.http.format import timestamp

# Core codes whose name in this API differs from the upper-cased core code.
_CODES = {
    "model_not_loaded": "MODEL_NOT_RUNNING",
    "deployment_not_running": "MODEL_NOT_RUNNING",
    "invalid_json": "INVALID_REQUEST",
    "context_length_exceeded": "INVALID_REQUEST",
    "invalid_model_file": "INVALID_REQUEST",
    "engine_error": "INTERNAL_ERROR",
}

ERROR_SCHEMA = {"type": "object", "required": ["error", "timestamp", "path"], "properties": {
    "error": {"type": "object", "required": ["code", "message"],
              "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}},
    "timestamp": {"type": "string"}, "path": {"type": "string"}}}


def error_code(code: str) -> str:
    """This API's code for a core error code."""
    return _CODES.get(code, code.upper())


def render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    """The envelope and status; ``details`` names the field when the core did not say more."""
    details = err.details
    if details is None and err.field:
        details = {"field": err.field}
    return {"error": {"code": error_code(err.code), "message": err.message, "details": details},
            "timestamp": timestamp(), "path": path}, err.status
