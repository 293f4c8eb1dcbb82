"""Typed errors of llmd.

Every error the core raises on purpose is an :class:`LlmdError`: it carries an
HTTP status, a stable machine-readable ``code``, a human message and optional
``details``. Each HTTP dialect renders these in its own envelope; this module
knows nothing about HTTP frameworks.
"""

from __future__ import annotations

from typing import Any


class LlmdError(Exception):
    """Base class: an error with a status, a stable code and a message."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        # The request field at fault, when there is one; OpenAI calls it "param".
        self.field = field
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        """A dialect-neutral description, used by logs and the admin API."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        if self.field:
            out["field"] = self.field
        return out


class ValidationError(LlmdError):
    """A request field is missing, of the wrong type or out of range."""

    status = 400
    code = "invalid_request"


class InvalidJSONError(ValidationError):
    """The request body is not valid JSON (or not a JSON object)."""

    code = "invalid_json"


class ContextLengthError(ValidationError):
    """Prompt plus requested tokens do not fit into the model's context."""

    code = "context_length_exceeded"


class NotFoundError(LlmdError):
    """A route or resource does not exist."""

    status = 404
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    """No registered model has that name or alias."""

    code = "model_not_found"


class ModelNotLoadedError(LlmdError):
    """The model exists but no running deployment serves it (yet)."""

    status = 503
    code = "model_not_loaded"

    def __init__(self, message: str, *, retry_after: int = 5, **kw: Any) -> None:
        kw.setdefault("headers", {})["Retry-After"] = str(retry_after)
        super().__init__(message, **kw)


class ConflictError(LlmdError):
    """The resource already exists or is in a state that forbids the action."""

    status = 409
    code = "conflict"


class ModelExistsError(ConflictError):
    """A model with that name is already registered."""

    code = "model_already_exists"


class InvalidModelFileError(ValidationError):
    """A file given as a model is missing, unreadable or not GGUF."""

    code = "invalid_model_file"


class ServerBusyError(LlmdError):
    """The admission queue is full; the client should retry later."""

    status = 503
    code = "server_busy"

    def __init__(self, message: str, *, retry_after: int = 1, **kw: Any) -> None:
        kw.setdefault("headers", {})["Retry-After"] = str(retry_after)
        super().__init__(message, **kw)


class ShuttingDownError(LlmdError):
    """The daemon is stopping and takes no new work."""

    status = 503
    code = "shutting_down"

    def __init__(self, message: str = "llmd is shutting down", **kw: Any) -> None:
        kw.setdefault("headers", {})["Retry-After"] = "5"
        super().__init__(message, **kw)


class PayloadTooLargeError(LlmdError):
    """The request body exceeds the configured limit."""

    status = 413
    code = "payload_too_large"


class MethodNotAllowedError(LlmdError):
    """The route exists but not for this HTTP method."""

    status = 405
    code = "method_not_allowed"


class EngineError(LlmdError):
    """llama.cpp failed while loading or generating."""

    status = 500
    code = "engine_error"


class InternalError(LlmdError):
    """An unexpected failure; the message is safe to show to a client."""

    status = 500
    code = "internal_error"


class InsufficientResourcesError(LlmdError):
    """Not enough memory (or GPU) to load a model; ``details`` carries the figures."""

    status = 503
    code = "insufficient_resources"


class InsufficientStorageError(LlmdError):
    """Not enough free disk for a download; ``details`` carries the figures."""

    status = 507
    code = "insufficient_storage"


class OperationTimeoutError(LlmdError):
    """A lifecycle operation did not finish within the caller's ``timeout``."""

    status = 504
    code = "operation_timeout"


class DeploymentNotFoundError(NotFoundError):
    """No deployment has that id."""

    code = "deployment_not_found"


class DeploymentNotRunningError(LlmdError):
    """The deployment exists but is not running, so it cannot answer."""

    status = 409
    code = "deployment_not_running"


class DownloadNotFoundError(NotFoundError):
    """No download task has that id."""

    code = "download_not_found"


class InvalidSourceError(ValidationError):
    """A model source other than the supported ones (huggingface, ollama, local)."""

    code = "invalid_source"


class InvalidActionError(ConflictError):
    """The action does not apply to the object in its current state (e.g. pausing a finished download)."""

    code = "invalid_action"


class ChatNotSupportedError(ValidationError):
    """The model has no chat template and cannot take chat messages."""

    code = "chat_not_supported"


class HubUnavailableError(LlmdError):
    """The model hub (Hugging Face, an Ollama registry) cannot be reached and nothing is cached."""

    status = 502
    code = "hub_unavailable"


class AuthenticationError(LlmdError):
    """No credentials, or credentials that are not valid (unknown, revoked, expired)."""

    status = 401
    code = "authentication_failed"

    def __init__(self, message: str = "authentication required", **kw: Any) -> None:
        kw.setdefault("headers", {}).setdefault("WWW-Authenticate", "Bearer")
        super().__init__(message, **kw)


class AuthorizationError(LlmdError):
    """Valid credentials that do not reach this route or model."""

    status = 403
    code = "authorization_failed"


class ChecksumMismatchError(LlmdError):
    """A downloaded file's sha256 differs from the hub's (LFS metadata or the Ollama digest)."""

    status = 502
    code = "checksum_mismatch"


class ModelLoadError(LlmdError):
    """A model could not be loaded: its file, its engine or the box refused it (the model's log says why).

    A 503, not a 500: nothing in llmd failed; the model cannot be served until its cause is fixed.
    """

    status = 503
    code = "model_load_failed"


class EngineNotInstalledError(LlmdError):
    """The program of an external engine (vLLM) is not installed; the message names the command."""

    status = 503
    code = "engine_not_installed"


class ConfigError(Exception):
    """A configuration problem that stops the daemon from starting.

    Its message is one line that names the key and the file.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key  # the setting at fault (section.key), when one is
