"""Seed 002's error envelope: ``{"error": {"code", "message", "details"}, "timestamp", "path"}``."""

from __future__ import annotations

from typing import Any

from llmd.errors import LlmdError
from llmd.http.api import utc_timestamp as timestamp

# Core codes whose seed-002 name differs from the upper-cased core code.
_CODES = {
    "model_not_loaded": "MODEL_NOT_RUNNING",
    "deployment_not_running": "MODEL_NOT_RUNNING",
    "invalid_json": "INVALID_REQUEST",
    "context_length_exceeded": "INVALID_REQUEST",
    "invalid_model_file": "INVALID_REQUEST",
    "engine_error": "INTERNAL_ERROR",
}


def error_code(err: LlmdError) -> str:
    """The seed-002 code for a core error."""
    return _CODES.get(err.code, err.code.upper())


def render_error(err: LlmdError, path: str) -> tuple[Any, int]:
    """The envelope and status; ``details`` names the field when the core did not say more."""
    details = err.details
    if details is None and err.field:
        details = {"field": err.field}
    return {"error": {"code": error_code(err), "message": err.message, "details": details},
            "timestamp": timestamp(), "path": path}, err.status
