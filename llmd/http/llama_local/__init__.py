"""The LLaMA Local API: ``/generate``, ``/health``, ``/model-info``."""

from llmd.http.llama_local.routes import build

__all__ = ["build"]
