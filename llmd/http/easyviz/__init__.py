"""The EasyVizAI dialect of seed 000: ``/api/v1/llm/...`` and WebSocket chat."""

from llmd.http.easyviz.routes import build

__all__ = ["build"]
