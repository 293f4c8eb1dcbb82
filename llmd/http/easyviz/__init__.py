"""The EasyVizAI API: ``/api/v1/llm/...`` and its WebSocket chat."""

from llmd.http.easyviz.routes import build

__all__ = ["build"]
