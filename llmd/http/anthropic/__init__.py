"""The Anthropic Messages API: ``/v1/messages`` and ``/v1/messages/count_tokens``."""

from llmd.http.anthropic.routes import build

__all__ = ["build"]
