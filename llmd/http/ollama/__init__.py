"""The Ollama API: ``/api/chat``, ``/api/generate``, ``/api/tags`` and the rest, as Ollama's clients call them."""

from llmd.http.ollama.routes import build

__all__ = ["build"]
