"""The "LLaMA Local" dialect of seed 003: ``/generate``, ``/health``, ``/model-info``, docs."""

from llmd.http.local.routes import build

__all__ = ["build"]
